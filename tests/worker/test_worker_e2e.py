"""Real Redis, a real Celery worker process: the demo analysis end to end (progress, every layer, parts
summing to the total), a knockout run, a failure with a readable reason and its restart, and 200
concurrent GETs of the cached result through the real API."""

from __future__ import annotations

import os

import numpy as np
import pytest

from app.served import in_thread
from tests.load import get_concurrently
from tests.worker.conftest import WorkerProcess, purge_broker, wait_for_job
from worker import jobs
from worker.revision import model_revision

PARTS = ("redundancy", "unique_vision", "unique_language", "synergy")
SMALL = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 80, "dims": [4, 4, 3],
         "gaussianize": False, "seed": 11}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(redis_server, tmp_path_factory):
    purge_broker(redis_server.url)
    env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", "PIDFLOW_LAYER_BATCH": "3"}
    process = WorkerProcess("e2e", tmp_path_factory.mktemp("logs") / "e2e.log", env)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def finished(worker):
    """The small demo analysis, run once for the module: (JobInfo, states seen, result document)."""
    submitted = jobs.submit(SMALL)
    assert submitted.state == "queued" and not submitted.cached
    info, seen = wait_for_job(jobs, submitted.id, poll_s=0.05)
    assert info.state == "succeeded", f"{info.error}\n{worker.log()[-3000:]}"
    return info, seen, jobs.result(submitted.id)


def _check_run(run: dict, num_layers: int) -> None:
    assert [layer["layer"] for layer in run["layers"]] == list(range(num_layers + 1))
    for layer in run["layers"]:
        assert sum(layer[part] for part in PARTS) == pytest.approx(layer["total"], abs=1e-9)
        assert layer["total"] > 0


def test_demo_analysis_end_to_end(finished, redis_server, client):
    info, seen, document = finished
    assert (info.stage, info.progress, info.error) == ("done", 1.0, None)
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert {stage for _, stage, _ in seen} >= {"analyze", "done"}  # progress was visible while running
    num_layers = document["model"]["num_layers"]
    assert num_layers == 6 and document["model"]["revision"] == model_revision("demo")
    _check_run(document["runs"]["baseline"], num_layers)
    assert document["runs"]["knockout"] is None and document["request"]["seed"] == SMALL["seed"]
    assert len(document["questions"]) == document["n_questions"] == len(document["pointwise"]["baseline"]) == 80
    assert all(len(per_question) == num_layers + 1 for per_question in document["pointwise"]["baseline"])
    assert document["timing"]["extract_s"] > 0
    job = client.hgetall(f"pidflow:job:{info.id}")
    assert job[b"results_written"] == b"1" and job[b"total"] == b"3"  # 7 layers in batches of 3
    assert not client.exists(f"pidflow:features:{info.id}", f"pidflow:layers:{info.id}")  # work data cleaned


def test_pointwise_terms_keep_six_significant_digits_and_average_to_the_layer_values(finished):
    _, _, document = finished
    pointwise = np.array(document["pointwise"]["baseline"])  # (question, layer, part), bits
    layers = np.array([[layer[part] for part in PARTS] for layer in document["runs"]["baseline"]["layers"]])
    np.testing.assert_allclose(pointwise.mean(axis=0), layers, rtol=1e-5, atol=1e-6)
    assert all(float(f"{value:.6g}") == value for value in pointwise.ravel())
    assert any(float(f"{value:.5g}") != value for value in pointwise.ravel())  # rounded to 6, not fewer


def test_the_same_request_is_served_from_the_cache(finished):
    info, _, document = finished
    again = jobs.submit(dict(SMALL))
    assert (again.id, again.state, again.cached) == (info.id, "succeeded", True)
    assert jobs.result(info.id) == document


def test_knockout_run_gives_both_runs_and_effects(worker):
    request = {**SMALL, "seed": 12, "knockout": {"edges": ["image->question"], "layers": [1, 3]}}
    info, _ = wait_for_job(jobs, jobs.submit(request).id)
    assert info.state == "succeeded", info.error
    document = jobs.result(info.id)
    for run in ("baseline", "knockout"):
        _check_run(document["runs"][run], document["model"]["num_layers"])
    assert document["effects"] is not None and document["pointwise"]["knockout"] is not None
    assert all(question["knockout"] is not None for question in document["questions"])


def test_a_failure_is_stored_with_a_readable_reason_and_a_resubmit_restarts_it(worker, client):
    request = {**SMALL, "seed": 13, "knockout": {"edges": ["image->question"], "layers": [4, 9]}}
    first = jobs.submit(request)
    info, _ = wait_for_job(jobs, first.id)
    assert info.state == "failed" and info.stage == "extract"
    assert info.error.startswith("extract failed: ValueError") and "9" in info.error
    with pytest.raises(jobs.JobNotReady):
        jobs.result(first.id)
    again = jobs.submit(request)
    assert (again.id, again.state, again.error) == (first.id, "queued", None)
    assert client.hget(f"pidflow:job:{first.id}", "attempt") == b"2"
    info, _ = wait_for_job(jobs, first.id)
    assert info.state == "failed" and "9" in info.error
    assert jobs.delete(first.id) and not jobs.delete(first.id)


def test_200_concurrent_gets_of_a_cached_result_through_the_api(finished, redis_server):
    from app.server import create_app
    from app.service import AnalysisService
    from app.settings import Settings

    info, _, document = finished
    service = AnalysisService(Settings(redis_url=redis_server.url))
    with in_thread(create_app(service=service, with_ui=False)) as base:
        answers = get_concurrently(f"{base}/api/v1/analyses/{info.id}/result", document, n=200, timeout_s=60)
    assert answers == [(200, True)] * 200


def test_batched_layers_equal_one_in_process_analysis(finished):
    from pidcore.pipeline.analysis import run_analysis

    _, _, document = finished
    reference = run_analysis(dict(SMALL))
    for ours, theirs in zip(document["runs"]["baseline"]["layers"], reference["runs"]["baseline"]["layers"],
                            strict=True):
        for key in (*PARTS, "total"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12)
    ours, theirs = np.array(document["pointwise"]["baseline"]), np.array(reference["pointwise"]["baseline"])
    assert ours.shape == theirs.shape == (80, 7, 4)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert document["questions"] == reference["questions"]
