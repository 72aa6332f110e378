"""kill -9 mid-study under the current flow (issue 17, "what must be shown"): GPU workers (queue gpu) only
extract, CPU workers (queue cpu) plan, merge question shards, analyse and assemble. A killed GPU worker loses
only the part it was extracting (redelivered to a new one; the part already extracted is not extracted again);
a killed CPU worker that was merging a part's shards, or running the analysis whose landing assembles the part,
loses only that task (redelivered; no shard extracted again, no landed analysis run again). Every study
completes once (one report task, the report written once) and equals pidcore.study.run.run_study. The
fixtures are the job layer's (tests/worker/conftest.py, test_recovery.py); a CPU worker killed mid-analysis is
tests/worker/test_study_cpu_analyses.py's."""

from __future__ import annotations

import json

import pytest

from tests.worker.test_recovery import FAST_REDELIVERY, _unacked_tasks, _until
from tests.worker.test_study_cpu_analyses import _reference, _same_report
from tests.worker.test_study_shards import _wait
from worker import studies

STUDY = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 48, "recipes": ["pidflow"],
         "gaussianize": "none", "dims": [2, 2, 2], "bootstrap": 0, "sweep": None, "seed_cut": True}
QUIET = {**FAST_REDELIVERY, "PIDFLOW_WORKER_PRELOAD": "0"}

pytestmark = pytest.mark.slow


def _in_flight(client, task: str, index: int | None = None) -> list[list]:
    """Args of the unacknowledged `task` messages (of part `index` when given)."""
    return [args for name, args in _unacked_tasks(client) if name == task and (index is None or args[2] == index)]



def _first_difference(report: dict, reference: dict) -> str | None:
    """Where the report's series first differs from the reference's (run, layer, key), for the message."""
    for mine, theirs in zip(report["series"], reference["series"], strict=True):
        for a, b in zip(mine["layers"], theirs["layers"], strict=True):
            for key in a:
                if json.dumps(a[key], sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
                    return f"{mine['task']} {mine['run']} layer {a['layer']} {key}: {a[key]!r} != {b.get(key)!r}"
        for key in mine:
            if key != "layers" and mine[key] != theirs[key]:
                return f"{mine['task']} {mine['run']} {key}: {mine[key]!r} != {theirs[key]!r}"
    return None


def _state(client, study_id: str) -> dict:
    return {k.decode(): v.decode() for k, v in client.hgetall(studies.keys(study_id)["study"]).items()}


def test_a_gpu_worker_killed_mid_extraction_loses_only_its_part(start_worker, client):
    client.flushdb()
    study = {**STUDY, "seed": 31}
    doomed = start_worker("gpu-doomed", queues="gpu", **QUIET)
    cpu = start_worker("cpu-steady", queues="cpu", **QUIET)
    study_id = studies.submit(dict(study))["id"]
    features = studies.keys(study_id)["study-features"]

    def second_part_in_flight() -> bool:  # part 0 extracted and stored, part 1's extraction delivered
        return client.hexists(features, "0:part") and bool(_in_flight(client, studies.STUDY_PART, 1))

    _until(second_part_in_flight, 180, "part 0 stored and part 1 in flight on the GPU worker", poll_s=0.01)
    doomed.kill()
    started_before_kill = client.hexists(studies.keys(study_id)["study"], "deliveries:1")
    landed_before_kill = client.hexists(features, "1:part")
    rescuer = start_worker("gpu-rescuer", queues="gpu", **QUIET)
    info = _wait(study_id, 240)
    assert info["state"] == "succeeded", info["error"]
    state = _state(client, study_id)
    assert state["deliveries:0"] == "1", "the part extracted before the kill was not extracted again"
    assert state["deliveries:1"] == ("1" if landed_before_kill or not started_before_kill else "2")
    assert "Task pidflow.study_part[" in rescuer.log(), "the lost part went to the new GPU worker"
    for name in (studies.STUDY_PREPARE, studies.STUDY_ANALYZE, studies.STUDY_FINALIZE):
        assert f"Task {name}[" not in doomed.log() + rescuer.log(), f"{name} ran on a GPU worker"
    assert cpu.log().count(f"Task {studies.STUDY_FINALIZE}[") == 2, "one report task (received, succeeded)"
    report = studies.report(study_id)
    client.flushdb()
    reference = _reference(study)
    assert _first_difference(report, reference) is None, _first_difference(report, reference)
    _same_report(report, reference)


@pytest.mark.parametrize("stage", ["merge", "assemble"])
def test_a_cpu_worker_killed_while_merging_or_assembling_a_part(start_worker, client, stage):
    """`merge`: killed while its study_prepare merges part 0's three question shards (PIDFLOW_EXTRACT_SHARD
    16 of 48); `assemble`: killed while running part 0's last analysis unit, whose landing assembles the
    part's records. The redelivered task merges / lands and assembles; the shards are not extracted again and
    the units that landed before are not run again."""
    client.flushdb()
    study = {**STUDY, "tasks": ["shape"], "seed": 32 if stage == "merge" else 33}
    env = {**QUIET, "PIDFLOW_EXTRACT_SHARD": "16"} if stage == "merge" else QUIET
    start_worker("gpu-steady", queues="gpu", **env)
    doomed = start_worker("cpu-doomed", queues="cpu", **env)
    study_id = studies.submit(dict(study))["id"]
    layers = studies.layers_key(study_id, 0)

    def caught() -> bool:
        if stage == "merge":
            return bool(_in_flight(client, studies.STUDY_PREPARE, 0))
        plan = client.hget(studies.keys(study_id)["study"], "plan:0")
        if plan is None:
            return False
        total = len(json.loads(plan)["units"])
        return client.hlen(layers) == total - 1 and bool(_in_flight(client, studies.STUDY_ANALYZE, 0))

    _until(caught, 240, f"part 0's {stage} in flight on the CPU worker", poll_s=0.005)
    doomed.kill()
    landed_before = {int(k) for k in client.hkeys(layers)}
    rescuer = start_worker("cpu-rescuer", queues="cpu", **env)
    info = _wait(study_id, 240)
    assert info["state"] == "succeeded", info["error"]
    state = _state(client, study_id)
    if stage == "merge":
        assert json.loads(state["shards:0"]) == [[0, 16], [16, 32], [32, 48]]
        assert [state[f"deliveries:0:shard:{shard}"] for shard in range(3)] == ["1", "1", "1"], \
            "no shard extracted again"
        assert state.get("deliveries:0:prepare", "0") in ("1", "2")
        assert "Task pidflow.study_prepare[" in rescuer.log()
    else:
        units = {int(k.rsplit(":", 1)[1]): int(v) for k, v in state.items() if k.startswith("deliveries:0:unit:")}
        assert all(units[unit] == 1 for unit in landed_before), "a landed analysis ran again"
        lost, = set(units) - landed_before
        assert units[lost] in (1, 2), units
        assert "Task pidflow.study_analyze[" in rescuer.log()
    finalized = doomed.log().count(f"Task {studies.STUDY_FINALIZE}[") + \
        rescuer.log().count(f"Task {studies.STUDY_FINALIZE}[")
    assert finalized in (2, 3), "one report task (received and succeeded; a killed copy only received)"
    assert state["finalizing"] == "1" and client.exists(studies.keys(study_id)["study-report"])
    report = studies.report(study_id)
    client.flushdb()
    reference = _reference(study)
    assert _first_difference(report, reference) is None, _first_difference(report, reference)
    _same_report(report, reference)
