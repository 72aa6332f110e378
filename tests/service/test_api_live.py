"""The API over real HTTP: 200 concurrent GETs of a cached result (uvicorn, real Redis), and the demo
analysis end to end through `pidflow serve` (private Redis, a real Celery worker process)."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

import app.service as service_module
from app.redis_local import LocalRedis
from app.served import in_thread, served, stack_available
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.load import get_concurrently
from tests.service.fakejobs import NUM_LAYERS, FakeJobs

PARTS = ("redundancy", "unique_vision", "unique_language", "synergy")


@pytest.fixture(scope="module")
def live_api():
    with LocalRedis() as local, pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)
        client = redis.Redis.from_url(local.url)
        service = AnalysisService(Settings(redis_url=local.url), jobs=FakeJobs(client), redis_client=client)
        with in_thread(create_app(service=service, with_ui=False)) as url:
            yield url


def test_200_concurrent_gets_of_a_cached_result(live_api):
    job = httpx.post(f"{live_api}/api/v1/analyses", json={"seed": 7}, timeout=30).json()
    url = f"{live_api}{job['result_url']}"
    expected = httpx.get(url, timeout=30).json()
    answers = get_concurrently(url, expected, n=200)
    assert answers == [(200, True)] * 200


@pytest.mark.slow
@pytest.mark.skipif(not stack_available(), reason="worker/ and the demo model have not landed")
def test_demo_analysis_end_to_end_through_pidflow_serve():
    with served() as root:
        base = f"{root}/api/v1"
        request = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 60,
                   "dims": [4, 4, 3], "gaussianize": False, "seed": 3, "bootstrap": 0}
        submitted = httpx.post(f"{base}/analyses", json=request, timeout=30)
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        seen = []
        deadline = time.monotonic() + 180
        while True:
            status = httpx.get(f"{root}{job['status_url']}", timeout=10).json()
            seen.append((status["state"], status["progress"]))
            assert status["state"] != "failed", status["error"]
            if status["state"] == "succeeded":
                break
            assert time.monotonic() < deadline, f"analysis did not finish: {seen[-1]}"
            time.sleep(0.3)
        progress = [p for _, p in seen]
        assert progress == sorted(progress) and progress[-1] == 1.0
        document = httpx.get(f"{root}{job['result_url']}", timeout=30).json()
        layers = document["runs"]["baseline"]["layers"]
        assert len(layers) == document["model"]["num_layers"] + 1
        for layer in layers:
            assert sum(layer[p] for p in PARTS) == pytest.approx(layer["total"], abs=1e-6)
        assert len(document["questions"]) == len(document["pointwise"]["baseline"])
        again = httpx.post(f"{base}/analyses", json=request, timeout=30)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
