"""Issue 12's privacy attacks against the real job layer (real Redis, a real worker, hosted mode): the
id an attacker computes offline from a guessed request reads nothing, a share link reveals no id, and a
resubmission of the shared request cannot delete the owner's analysis."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings

pytestmark = pytest.mark.slow
ALPHA, BETA = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
REQUEST = {"model": "demo", "tasks": ["color"], "n_questions": 40, "dims": [2, 2, 1], "gaussianize": False,
           "bootstrap": 0, "seed": 51}


def _offline_id(request: dict) -> str:
    """What anyone can compute without the server: the job layer's content-addressed id."""
    from pidcore import __version__
    from pidcore.pipeline.analysis import AnalysisRequest
    from worker.cache import job_id_for
    from worker.revision import model_revision

    return job_id_for(AnalysisRequest.from_dict(request).content_hash(), model_revision("demo"), __version__)


def test_guessed_id_leaked_id_and_takeover_against_the_real_stack(start_worker, redis_server, client):
    start_worker("hosted", PIDFLOW_WORKER_PRELOAD="0")
    api = TestClient(create_app(service=AnalysisService(Settings(redis_url=redis_server.url,
                                                                 api_tokens=("alpha", "beta"))), with_ui=False))
    job = api.post("/api/v1/analyses", json=REQUEST, headers=ALPHA).json()
    deadline = time.monotonic() + 120
    while api.get(job["status_url"]).json()["state"] != "succeeded":
        assert time.monotonic() < deadline and api.get(job["status_url"]).json()["state"] != "failed"
        time.sleep(0.3)
    result = api.get(job["result_url"]).json()
    guessed = _offline_id(REQUEST)
    assert client.exists(f"pidflow:result:{guessed}")  # the computation is stored under it...
    assert api.get(f"/api/v1/analyses/{guessed}/result").status_code == 404  # ...but not readable by it
    assert job["id"] != guessed
    token = api.post(f"/api/v1/analyses/{job['id']}/share", headers=ALPHA).json()["share_token"]
    shared = api.get(f"/api/v1/shared/{token}/result")
    status = api.get(f"/api/v1/shared/{token}")
    leaks = shared.text + status.text + json.dumps(dict(shared.headers))
    assert shared.json() == result and job["id"] not in leaks and guessed not in leaks
    again = api.post("/api/v1/analyses", json=shared.json()["request"], headers=BETA)
    assert again.status_code == 200 and again.json()["cached"] and again.json()["id"] != job["id"]
    assert api.delete(f"/api/v1/analyses/{job['id']}", headers=BETA).status_code == 403
    assert api.delete(f"/api/v1/analyses/{again.json()['id']}", headers=BETA).status_code == 200
    assert api.get(job["result_url"]).json() == result  # alpha's analysis and its computation survive
