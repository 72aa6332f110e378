"""The API over real HTTP: 200 concurrent GETs of a cached result (uvicorn, real Redis), and the demo
analysis end to end through `pidflow serve` (private Redis, a real Celery worker process)."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

import app.service as service_module
from app.redis_local import LocalRedis, free_port
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import NUM_LAYERS, FakeJobs

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("redundancy", "unique_vision", "unique_language", "synergy")


@pytest.fixture(scope="module")
def live_api():
    with LocalRedis() as local, pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)
        client = redis.Redis.from_url(local.url)
        service = AnalysisService(Settings(redis_url=local.url), jobs=FakeJobs(client), redis_client=client)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service=service, with_ui=False), port=port,
                                               log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(10)


def test_200_concurrent_gets_of_a_cached_result(live_api):
    job = httpx.post(f"{live_api}/api/v1/analyses", json={"seed": 7}).json()
    url = f"{live_api}{job['result_url']}"
    expected = httpx.get(url).json()
    with httpx.Client(limits=httpx.Limits(max_connections=200), timeout=30) as client:
        def get(_):
            response = client.get(url)
            return response.status_code, response.json() == expected

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            answers = list(pool.map(get, range(200)))
    assert answers == [(200, True)] * 200


def _stack_available() -> bool:
    names = ("worker.jobs", "worker.celery_app", "pidcore.analysis", "pidcore.demo", "pidcore.data")
    try:
        return all(importlib.util.find_spec(name) is not None for name in names)
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _stack_available(), reason="worker/ and the demo model have not landed")
def test_demo_analysis_end_to_end_through_pidflow_serve():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PIDFLOW_PREWARM="0", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 90
        while True:  # up, and a worker answering
            assert proc.poll() is None and time.monotonic() < deadline, "pidflow serve did not come up"
            try:
                if (httpx.get(f"{base}/healthz", timeout=5).json().get("workers") or 0) >= 1:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        request = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 60,
                   "dims": [4, 4, 3], "gaussianize": False, "seed": 3}
        submitted = httpx.post(f"{base}/analyses", json=request, timeout=30)
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        seen = []
        deadline = time.monotonic() + 180
        while True:
            status = httpx.get(f"http://127.0.0.1:{port}{job['status_url']}", timeout=10).json()
            seen.append((status["state"], status["progress"]))
            assert status["state"] != "failed", status["error"]
            if status["state"] == "succeeded":
                break
            assert time.monotonic() < deadline, f"analysis did not finish: {seen[-1]}"
            time.sleep(0.3)
        progress = [p for _, p in seen]
        assert progress == sorted(progress) and progress[-1] == 1.0
        document = httpx.get(f"http://127.0.0.1:{port}{job['result_url']}", timeout=30).json()
        layers = document["runs"]["baseline"]["layers"]
        assert len(layers) == document["model"]["num_layers"] + 1
        for layer in layers:
            assert sum(layer[p] for p in PARTS) == pytest.approx(layer["total"], abs=1e-6)
        assert len(document["questions"]) == len(document["pointwise"]["baseline"])
        again = httpx.post(f"{base}/analyses", json=request, timeout=30)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
