"""The submission's capacity check counts what the feature folder holds, and runs only for a job that will
extract: on a nearly full folder (PIDFLOW_FEATURE_MAX_GB) a cached request is answered (200, cached) while
a new one is refused with 507 saying what the folder holds and what it needs, nothing queued; a failed job
submitted again extracts, so it is checked too. Real Redis and the real job layer through the API (no
worker: the test finishes and fails jobs through the job store)."""

from __future__ import annotations

import json
import os

import pytest
import redis
from fastapi.testclient import TestClient

from worker.feature_store import MIB, feature_bytes, held_bytes, model_shape

REQUEST = {"model": "demo", "tasks": ["color"], "n_questions": 100, "bootstrap": 0}


@pytest.fixture
def api(redis_server, tmp_path, monkeypatch):
    from app.server import create_app
    from app.service import AnalysisService
    from app.settings import Settings

    redis.Redis.from_url(redis_server.url).flushdb()
    folder = tmp_path / "features"
    folder.mkdir()
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(folder))
    layers, hidden = model_shape("demo")
    needed = feature_bytes(layers, hidden, REQUEST["n_questions"], 1)
    monkeypatch.setenv("PIDFLOW_FEATURE_MAX_GB", str(2 * needed / 1024**3))  # room for two such jobs
    service = AnalysisService(Settings(redis_url=redis_server.url))
    return TestClient(create_app(service=service, with_ui=False)), folder, needed


def _store():
    from worker import jobs

    return jobs._context()[1]


def _fill(folder, size: int) -> None:
    """An upload's folder of `size` bytes (sparse: its size is what counts)."""
    (folder / ("upload" + "ab" * 32)).mkdir()
    with open(folder / ("upload" + "ab" * 32) / "000.npy", "wb") as handle:
        handle.truncate(size)


def test_a_cached_request_is_answered_and_a_new_one_refused_on_a_nearly_full_folder(api, redis_server):
    client, folder, needed = api
    first = client.post("/api/v1/analyses", json={**REQUEST, "seed": 1})
    assert first.status_code == 202, first.text  # an empty folder: room
    store = _store()
    job = first.json()["id"]
    assert store.finish(job, store.get(job)["attempt"], json.dumps({"schema": "pidflow.result/1"})) == 1
    held = needed * 3 // 2  # with one more job's features the folder would pass its bound
    _fill(folder, held)
    (folder / ".partial-upload-body.x").write_bytes(b"0" * 4096)  # a body being received: not counted
    assert held_bytes() == held
    again = client.post("/api/v1/analyses", json={**REQUEST, "seed": 1})
    assert again.status_code == 200 and again.json()["cached"] is True and again.json()["state"] == "succeeded"
    queue = redis.Redis.from_url(redis_server.url).llen("gpu")  # the first job's extraction message
    assert queue == 1
    refused = client.post("/api/v1/analyses", json={**REQUEST, "seed": 2})
    assert refused.status_code == 507, refused.text
    detail = refused.json()["detail"]
    assert (f"it holds {held / MIB:.1f} MiB and the features of 100 questions x 1 run(s) of demo need "
            f"{needed / MIB:.1f} MiB more; nothing was queued") in detail
    assert f"PIDFLOW_FEATURE_MAX_GB = {2 * needed / 1024**3:g} GiB" in detail and str(folder) not in detail
    assert sorted(key.decode() for key in redis.Redis.from_url(redis_server.url).keys("pidflow:job:*")) == \
        [f"pidflow:job:{job}"]  # nothing of the refused one
    assert redis.Redis.from_url(redis_server.url).llen("gpu") == queue
    os.remove(folder / ("upload" + "ab" * 32) / "000.npy")  # room again: accepted
    assert client.post("/api/v1/analyses", json={**REQUEST, "seed": 2}).status_code == 202


def test_a_failed_job_submitted_again_extracts_so_it_is_checked(api):
    client, folder, needed = api
    job = client.post("/api/v1/analyses", json={**REQUEST, "seed": 3}).json()["id"]
    store = _store()
    assert store.fail(job, store.get(job)["attempt"], "lost")
    _fill(folder, needed * 3 // 2)
    assert client.post("/api/v1/analyses", json={**REQUEST, "seed": 3}).status_code == 507
    assert store.get(job)["state"] == "failed"  # left as it was
