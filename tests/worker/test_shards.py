"""One run's questions in shards over real workers (PIDFLOW_EXTRACT_SHARD): a worker killed mid-shard
loses only that shard (redelivered to another worker), and the merged result equals the unsharded
in-process analysis exactly."""

from __future__ import annotations

import pytest
import torch

from tests.worker.conftest import wait_for_job
from tests.worker.test_recovery import FAST_REDELIVERY, _unacked_tasks, _until
from worker import jobs
from worker.shards import shard_bounds, shard_size

REQUEST = {"model": "demo", "tasks": ["shape"], "n_questions": 96, "dims": [3, 3, 2], "gaussianize": "none",
           "bootstrap": 0, "seed": 4, "knockout": {"edges": ["image->question"], "layers": [2, 4]}}
SHARDED = {**FAST_REDELIVERY, "PIDFLOW_EXTRACT_SHARD": "30"}  # rounded up to 32: three shards

pytestmark = pytest.mark.slow


def test_shard_sizes_start_at_batch_boundaries():
    assert shard_size({"PIDFLOW_EXTRACT_SHARD": "30"}) == 32 and shard_size({}) == 0
    assert shard_bounds(96, 32) == [(0, 32), (32, 64), (64, 96)] and shard_bounds(70, 32)[-1] == (64, 70)
    with pytest.raises(ValueError, match="PIDFLOW_EXTRACT_SHARD"):
        shard_size({"PIDFLOW_EXTRACT_SHARD": "x"})


def test_a_worker_killed_mid_shard_loses_only_its_shard(start_worker, client):
    from pidcore.pipeline.analysis import run_analysis

    doomed = start_worker("shard-doomed", **SHARDED)
    job = jobs.submit(REQUEST)
    features = f"pidflow:features:{job.id}"

    def shards_in_flight() -> list[list]:
        return [args for name, args in _unacked_tasks(client) if name == "pidflow.extract_shard"]

    def mid_shard() -> bool:  # one shard stored, another one delivered and not acknowledged
        return client.hexists(features, "baseline:shard:0") and len(shards_in_flight()) == 1

    try:
        _until(mid_shard, 180, "a shard stored and the next in flight", poll_s=0.01)
    except AssertionError as exc:  # say what was there instead
        raise AssertionError(f"{exc}; stored: {sorted(client.hkeys(features))}, unacked: "
                             f"{_unacked_tasks(client)}, job: {client.hgetall(f'pidflow:job:{job.id}')}") from None
    doomed.kill()
    (_, _, index, _, _), = shards_in_flight()
    landed_before_kill = client.hexists(features, f"baseline:shard:{index}")
    # a message can be delivered (prefetched) before its body starts and counts itself
    started_before_kill = client.hexists(f"pidflow:job:{job.id}", f"deliveries:shard:{index}")
    start_worker("shard-rescuer", **SHARDED)
    info, _ = wait_for_job(jobs, job.id, timeout_s=180)
    assert info.state == "succeeded", info.error
    state = client.hgetall(f"pidflow:job:{job.id}")
    assert state[b"shards"] == b"3" and state[b"results_written"] == b"1"
    assert state[b"deliveries:shard:0"] == b"1", "the finished shard was not extracted again"
    expected = b"1" if landed_before_kill or not started_before_kill else b"2"
    assert state[f"deliveries:shard:{index}".encode()] == expected
    document = jobs.result(job.id)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): float32 kernels round alike
    try:
        reference = run_analysis(dict(REQUEST))
    finally:
        torch.set_num_threads(threads)
    for run in ("baseline", "knockout"):
        ours = [{k: layer[k] for k in ("redundancy", "unique_vision", "unique_language", "synergy", "total")}
                for layer in document["runs"][run]["layers"]]
        theirs = [{k: layer[k] for k in ("redundancy", "unique_vision", "unique_language", "synergy", "total")}
                  for layer in reference["runs"][run]["layers"]]
        assert ours == theirs, f"{run}: sharded and unsharded differ"
    assert document["questions"] == reference["questions"]
    assert document["effects"]["information_cost"] == reference["effects"]["information_cost"]
