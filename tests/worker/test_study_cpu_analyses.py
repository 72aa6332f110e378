"""Extraction and analysis apart (issue 17.1): a study part's GPU task only extracts and stores its runs;
its plan and every (recipe, run, layer batch) analysis are tasks on the cpu queue that any CPU worker takes;
the last analysis to land assembles the part. Against a real Redis: the task bodies in this process
(redeliveries are idempotent), and real Celery workers, one taking only `gpu` and one only `cpu`; both
reports equal the in-process study (pidcore.study.run.run_study)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from tests.worker.conftest import WorkerProcess, purge_broker
from worker import studies, study_tasks

STUDY = {"models": ["demo"], "tasks": ["shape"], "n_questions": 48, "recipes": ["pidflow", "seed"],
         "gaussianize": "none", "dims": [2, 2, 2], "bootstrap": 0, "seed": 5, "seed_cut": True,
         "sweep": {"edges": ["image->question"], "k": 9}, "knockouts": [{"edges": ["image->last"], "layers": [2, 3]}]}
BODIES = {studies.STUDY_PART: study_tasks.study_part.run, studies.STUDY_PREPARE: study_tasks.study_prepare.run,
          studies.STUDY_ANALYZE: study_tasks.study_analyze.run, studies.STUDY_SHARD: study_tasks.study_shard.run,
          studies.STUDY_FINALIZE: study_tasks.study_finalize.run}


@pytest.fixture
def sent(redis_server, client, monkeypatch):
    """[(task name, args)] the study layer would publish, recorded instead (this test runs their bodies)."""
    import worker.celery_app

    client.flushdb()
    messages = []
    record = lambda name, args, *_: messages.append((name, args))  # noqa: E731
    monkeypatch.setattr(worker.celery_app, "send", record)
    monkeypatch.setattr(study_tasks, "send", record)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): float32 kernels round alike
    yield messages
    torch.set_num_threads(threads)
    client.flushdb()  # no finished study left for another test that submits the same one


def _reference(study: dict) -> dict:
    """run_study in this process as the workers run it (OMP_NUM_THREADS=1): one torch thread and one BLAS
    thread (OpenBLAS with 2 threads, called from the reduction's 2-thread pool, rounds differently)."""
    from threadpoolctl import threadpool_limits

    from pidcore.study.run import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            return json.loads(json.dumps(run_study(dict(study))))
    finally:
        torch.set_num_threads(threads)


def _same_report(report: dict, reference: dict) -> None:
    for section in ("headline", "knockouts", "series", "parts", "correlations", "findings"):
        assert report[section] == reference[section], section


def test_the_gpu_task_only_extracts_and_redelivered_analyses_land_once(sent, client):
    study_id = studies.submit(dict(STUDY))["id"]
    attempt = client.hget(studies.keys(study_id)["study"], "attempt").decode()
    (name, args), = sent
    sent.clear()
    BODIES[name](*args)  # the GPU task: extracts, stores the runs, queues the plan and returns
    assert sent == [(studies.STUDY_PREPARE, [study_id, attempt, 0])]
    status = studies.status(study_id)
    assert status["parts"][0]["stage"] == "planning" and status["stages"]["extraction"] == {"done": 1, "total": 1}
    assert not client.exists(studies.layers_key(study_id, 0))
    sent.clear()
    BODIES[studies.STUDY_PREPARE](study_id, attempt, 0)
    plan = json.loads(client.hget(studies.keys(study_id)["study"], "plan:0"))
    # 6 layer batches of 1..8 layers (PIDFLOW_LAYER_BATCH 8: one per run and recipe); knockout runs cover only
    # the layers from their window on: baseline 0-6, seed cut 0-6, image->last@2-3 3-6, sweep windows 0-1 .. 5-5
    assert plan["differ"]["baseline"] == list(range(7))
    assert plan["differ"]["image->last@2-3"] == [3, 4, 5, 6]
    assert plan["differ"]["image->question@4-5"] == [5, 6]
    units = [args for name, args in sent]
    assert [name for name, _ in sent] == [studies.STUDY_ANALYZE] * len(plan["units"]) == [studies.STUDY_ANALYZE] * 18
    assert {tuple(unit[:2]) for unit in plan["units"]} == {(recipe, key) for recipe in ("pidflow", "seed")
                                                            for key in plan["keys"]}
    status = studies.status(study_id)
    assert status["parts"][0]["stage"] == "analysis" and status["parts"][0]["analyses"] == [0, 18]
    sent.clear()
    BODIES[studies.STUDY_PREPARE](study_id, attempt, 0)  # a redelivered plan keeps the first one
    assert len(sent) == 18 and client.hget(studies.keys(study_id)["study"], "plan:0") == json.dumps(plan).encode()
    sent.clear()
    for args in units[:5]:
        BODIES[studies.STUDY_ANALYZE](*args)
    BODIES[studies.STUDY_ANALYZE](*units[0])  # redelivered: lands once, no work
    assert client.hlen(studies.layers_key(study_id, 0)) == 5
    assert client.hget(studies.keys(study_id)["study"], f"deliveries:0:unit:{units[0][3]}") == b"1"
    assert studies.status(study_id)["stages"]["analysis"] == {"done": 5, "total": 18, "planned_parts": 1}
    for args in units[5:]:
        BODIES[studies.STUDY_ANALYZE](*args)
    assert sent == [(studies.STUDY_FINALIZE, [study_id, attempt])]  # the last to land assembled the part
    assert not client.exists(studies.layers_key(study_id, 0))
    assert not [f for f in client.hkeys(studies.keys(study_id)["study-features"])], "stored runs dropped"
    BODIES[studies.STUDY_ANALYZE](*units[-1])  # a late duplicate: nothing changes, no second report
    BODIES[studies.STUDY_FINALIZE](study_id, attempt)
    BODIES[studies.STUDY_FINALIZE](study_id, attempt)
    report = studies.report(study_id)
    _same_report(report, _reference(STUDY))
    assert report["timing"]["analyze_s"] > 0 and report["timing"]["extract_s"] > 0


@pytest.mark.slow
def test_real_workers_extract_on_gpu_and_analyse_on_cpu(redis_server, client, tmp_path):
    import os

    client.flushdb()
    purge_broker(redis_server.url)
    env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", "PIDFLOW_WORKER_PRELOAD": "0",
           "PIDFLOW_FEATURE_DIR": str(tmp_path / "features")}
    workers = [WorkerProcess("gpu-only", tmp_path / "gpu.log", env, "gpu"),
               WorkerProcess("cpu-only", tmp_path / "cpu.log", env, "cpu")]
    try:
        for worker in workers:
            worker.start()
        os.environ["PIDFLOW_FEATURE_DIR"] = env["PIDFLOW_FEATURE_DIR"]
        study_id = studies.submit(dict(STUDY))["id"]
        deadline, seen = time.monotonic() + 240, []
        while (info := studies.status(study_id))["state"] not in ("succeeded", "failed"):
            seen.append((info["parts"][0]["stage"], info["stages"]["analysis"]["done"]))
            assert time.monotonic() < deadline, f"study did not finish: {seen[-3:]}"
            time.sleep(0.1)
        assert info["state"] == "succeeded", info["error"]
        report = studies.report(study_id)
        gpu, cpu = workers[0].log(), workers[1].log()
        ran = {name: (gpu.count(f"Task {name}[") // 2, cpu.count(f"Task {name}[") // 2)  # received, succeeded
               for name in BODIES}
        assert ran == {studies.STUDY_PART: (1, 0), studies.STUDY_SHARD: (0, 0), studies.STUDY_PREPARE: (0, 1),
                       studies.STUDY_ANALYZE: (0, 18), studies.STUDY_FINALIZE: (0, 1)}, ran
        assert ("analysis", 0) in seen or any(stage == "analysis" for stage, _ in seen)
        assert not list((tmp_path / "features").glob("*/*")), "the part's stored runs are removed once it landed"
    finally:
        os.environ.pop("PIDFLOW_FEATURE_DIR", None)
        for worker in workers:
            worker.stop()
        client.flushdb()  # no finished study left for another test that submits the same one
    _same_report(report, _reference(STUDY))


def test_correct_only_parts_are_selected_alike_on_the_cpu_workers(sent, client):
    """correct_only: the plan keeps the rows the baseline answers correctly; every unit selects them again."""
    study = {**STUDY, "correct_only": True, "recipes": ["seed"], "sweep": None, "n_questions": 60}
    study_id = studies.submit(dict(study))["id"]
    while sent:
        name, args = sent.pop(0)
        BODIES[name](*args)
    report = studies.report(study_id)
    reference = _reference(study)
    _same_report(report, reference)
    assert report["parts"][0]["n_kept"] == report["parts"][0]["n_correct"] < 60


@pytest.mark.slow
def test_a_cpu_worker_killed_mid_analysis_loses_only_its_unit(redis_server, client, tmp_path):
    """kill -9 of the CPU worker while it holds an analysis unit: the unit is redelivered to another CPU
    worker, the units that landed are not run again, the study completes once and equals run_study."""
    import os

    from tests.worker.test_recovery import FAST_REDELIVERY, _unacked_tasks, _until

    study = {**STUDY, "recipes": ["pidflow"], "sweep": None, "seed": 7}  # not test_study_shards' study
    client.flushdb()
    purge_broker(redis_server.url)
    env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", "PIDFLOW_WORKER_PRELOAD": "0",
           **FAST_REDELIVERY}  # PIDFLOW_LAYER_BATCH 1: a unit per layer
    gpu = WorkerProcess("gpu-only", tmp_path / "gpu.log", env, "gpu")
    doomed = WorkerProcess("cpu-doomed", tmp_path / "doomed.log", env, "cpu")
    rescuer = WorkerProcess("cpu-rescuer", tmp_path / "rescuer.log", env, "cpu")
    try:
        gpu.start()
        doomed.start()
        study_id = studies.submit(dict(study))["id"]
        layers = studies.layers_key(study_id, 0)

        def mid_analysis() -> bool:  # some units landed, one delivered and not acknowledged
            return client.hlen(layers) >= 3 and [name for name, _ in _unacked_tasks(client)] == [studies.STUDY_ANALYZE]
        _until(mid_analysis, 180, "units landed and one in flight", poll_s=0.01)
        doomed.kill()
        (_, _, _, unit), = [args for _, args in _unacked_tasks(client)]
        landed_before = {int(k) for k in client.hkeys(layers)}
        rescuer.start()
        _until(lambda: studies.status(study_id)["state"] in ("succeeded", "failed"), 180, "the study to finish")
        state = {k.decode(): v.decode() for k, v in client.hgetall(studies.keys(study_id)["study"]).items()}
        info = studies.status(study_id)
        assert info["state"] == "succeeded", info["error"]
        assert client.exists(studies.keys(study_id)["study-report"])
        counts = {int(k.split(":")[-1]): int(v) for k, v in state.items() if k.startswith("deliveries:0:unit:")}
        assert all(counts[done] == 1 for done in landed_before), "a landed unit ran again"
        assert counts[unit] in (1, 2) and sum(counts.values()) <= len(counts) + 1, counts
        report = studies.report(study_id)
        assert report["timing"]["analysis_units"] == 17
    finally:
        for worker in (gpu, doomed, rescuer):
            worker.stop()
        client.flushdb()  # no finished study left for another test that submits the same one
    _same_report(report, _reference(study))
