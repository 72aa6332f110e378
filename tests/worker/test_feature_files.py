"""Features on a shared volume (PIDFLOW_FEATURE_DIR) through a real Celery worker: the result equals the
in-process analysis, and the job's files are gone once its result is written."""

from __future__ import annotations

import os

import pytest

from tests.worker.conftest import WorkerProcess, wait_for_job
from worker import jobs

REQUEST = {"model": "demo", "dataset": "easy-vqa", "tasks": ["shape"], "n_questions": 60, "dims": [3, 3, 2],
           "gaussianize": False, "bootstrap": 0, "seed": 5, "knockout": {"edges": ["image->question"], "layers": [1, 3]}}

pytestmark = pytest.mark.slow


def test_file_backed_features_through_a_real_worker(redis_server, client, tmp_path):
    from pidcore.pipeline.analysis import run_analysis

    volume = tmp_path / "features"
    env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", "PIDFLOW_LAYER_BATCH": "4",
           "PIDFLOW_FEATURE_DIR": str(volume)}
    worker = WorkerProcess("files", tmp_path / "files.log", env).start()
    try:
        submitted = jobs.submit(REQUEST)
        info, _ = wait_for_job(jobs, submitted.id)
        assert info.state == "succeeded", f"{info.error}\n{worker.log()[-3000:]}"
        document = jobs.result(submitted.id)
    finally:
        worker.stop()
    reference = run_analysis(dict(REQUEST))
    for run in ("baseline", "knockout"):
        for ours, theirs in zip(document["runs"][run]["layers"], reference["runs"][run]["layers"], strict=True):
            for key in ("redundancy", "unique_vision", "unique_language", "synergy", "total"):
                assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12)
    assert document["effects"]["information_cost"] == pytest.approx(reference["effects"]["information_cost"])
    assert volume.is_dir() and not any(volume.iterdir()), "the job's feature files are removed after finalize"
    assert not client.exists(f"pidflow:features:{submitted.id}")
