"""A study part in question shards over real workers (PIDFLOW_EXTRACT_SHARD): a worker killed mid-shard
loses only that shard (redelivered to another worker), and the report equals the unsharded in-process
study exactly (shards start at batch boundaries, so every batch holds the same questions)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.worker.test_recovery import FAST_REDELIVERY, _unacked_tasks, _until
from worker import studies

STUDY = {"models": ["demo"], "tasks": ["shape"], "n_questions": 48, "recipes": ["pidflow"], "gaussianize": "none",
         "dims": [2, 2, 2], "bootstrap": 0, "seed": 5, "sweep": None,
         "knockouts": [{"edges": ["image->last"], "layers": [2, 3]}]}
SHARDED = {**FAST_REDELIVERY, "PIDFLOW_EXTRACT_SHARD": "16"}  # three shards of 16 questions

pytestmark = pytest.mark.slow


def _wait(study_id: str, timeout_s: float) -> dict:
    state = {}

    def done() -> bool:
        state.update(studies.status(study_id))
        return state["state"] in ("succeeded", "failed")
    _until(done, timeout_s, f"study {study_id} to finish", poll_s=0.1)
    return state


def test_a_worker_killed_mid_shard_loses_only_its_shard_of_a_study(start_worker, client):
    from pidcore.study.run import run_study

    doomed = start_worker("study-doomed", **SHARDED)
    study_id = studies.submit(dict(STUDY))["id"]
    features = f"pidflow:study-features:{study_id}"

    def mid_shard() -> bool:  # one shard stored, the next one delivered and not acknowledged
        return (client.hexists(features, "0:0")
                and [name for name, _ in _unacked_tasks(client)] == ["pidflow.study_shard"])

    _until(mid_shard, 120, "a shard stored and the next in flight", poll_s=0.01)
    doomed.kill()
    (_, _, _, shard, _, _), = [args for _, args in _unacked_tasks(client)]
    landed_before_kill = client.hexists(features, f"0:{shard}")
    # the message is delivered before the task body counts it: a kill in between leaves no count behind
    started_before_kill = client.hexists(f"pidflow:study:{study_id}", f"deliveries:0:shard:{shard}")
    start_worker("study-rescuer", **SHARDED)
    info = _wait(study_id, 180)
    assert info["state"] == "succeeded", info["error"]
    assert [(part["progress"], part["message"]) for part in info["parts"]] == [(1.0, "done")]
    state = client.hgetall(f"pidflow:study:{study_id}")
    assert json.loads(state[b"shards:0"]) == [[0, 16], [16, 32], [32, 48]]
    assert state[b"deliveries:0:shard:0"] == b"1", "the finished shard was not extracted again"
    expected = b"1" if landed_before_kill or not started_before_kill else b"2"
    assert state[f"deliveries:0:shard:{shard}".encode()] == expected, "the lost shard runs once more, only it"
    assert not client.exists(features), "stored shards are dropped once the part has landed"
    report = studies.report(study_id)
    workers = {entry["worker"].split("@")[0] for entry in report["timing"]["shards"]}
    assert [entry["questions"] for entry in report["timing"]["shards"]] == [[0, 16], [16, 32], [32, 48]]
    assert workers == {"study-doomed", "study-rescuer"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): float32 kernels round alike
    try:
        reference = run_study(dict(STUDY))
    finally:
        torch.set_num_threads(threads)
    assert report["headline"] == reference["headline"]
    assert report["knockouts"] == reference["knockouts"]
    assert report["series"] == reference["series"]
    assert report["parts"] == reference["parts"]
