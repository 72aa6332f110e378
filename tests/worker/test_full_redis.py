"""A full Redis (maxmemory with noeviction, as docker-compose.yml sets it), as issue 12's attack probes it:
the API answers 507 with a reason (not a bare 500), a job whose data does not fit fails saying so (the
worker survives), a worker started while Redis is full stays up, and nothing is evicted silently."""

from __future__ import annotations

import time

import pytest
import redis
from fastapi.testclient import TestClient

from app.redis_local import LocalRedis
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.worker.conftest import wait_for_job
from worker.messages import redact_paths

pytestmark = pytest.mark.slow
JOB = {"model": "demo", "tasks": ["color"], "n_questions": 200, "dims": [2, 2, 1], "gaussianize": False, "bootstrap": 0}


def _fill(client) -> int:
    """Write 10 kB values, then smaller ones, until Redis refuses even 10 bytes; how many were written."""
    index = 0
    for size in (10_000, 1000, 100, 10):
        while True:
            try:
                client.set(f"junk:{index}", b"x" * size)
            except redis.exceptions.OutOfMemoryError:
                break
            index += 1
    return index


def _full_now(client, margin: int = 300_000) -> None:
    """Make Redis full whatever its client buffers do next: maxmemory `margin` bytes under what it uses."""
    client.config_set("maxmemory", client.info("memory")["used_memory"] - margin)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", b"x")


@pytest.fixture
def full_redis(tmp_path, monkeypatch):
    with LocalRedis(directory=tmp_path / "full", maxmemory="8mb") as server:
        monkeypatch.setenv("REDIS_URL", server.url)  # the job layer of this process too
        yield server


def test_a_full_redis_gives_clear_answers_and_states(full_redis, start_worker):
    client = redis.Redis.from_url(full_redis.url)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    api = TestClient(create_app(service=AnalysisService(Settings(redis_url=full_redis.url)), with_ui=False))
    worker = start_worker("full-a", REDIS_URL=full_redis.url, PIDFLOW_WORKER_PRELOAD="0")
    done = api.post("/api/v1/analyses", json={**JOB, "n_questions": 30}).json()
    assert wait_for_job(__import__("worker.jobs", fromlist=["jobs"]), done["id"], timeout_s=90)[0].state == "succeeded"
    result = api.get(done["result_url"]).json()

    _fill(client)
    client.delete(*[f"junk:{i}" for i in range(15)])  # ~150 kB of room: a job fits, its ~0.4 MB of features do not
    job = api.post("/api/v1/analyses", json=JOB)
    assert job.status_code == 202, job.text
    status = None
    deadline = time.monotonic() + 180  # extraction of 200 questions on a busy machine
    while status is None or status["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
        status = api.get(job.json()["status_url"]).json()
        assert "state" in status, status
    assert status["state"] == "failed" and "Redis is full (maxmemory" in status["error"], status
    assert worker.process.poll() is None  # the worker survived
    assert not client.exists(f"pidflow:features:{job.json()['id']}")  # its partial data was dropped

    refused = []
    for call in (lambda: api.post("/api/v1/analyses", json={**JOB, "seed": 5}),
                 lambda: api.post(f"/api/v1/analyses/{done['id']}/share")):
        _full_now(client)  # full before each write, whatever client buffers free meanwhile
        refused.append(call())
    for answer in refused:
        assert answer.status_code == 507, answer.text
        assert "Redis is full" in answer.json()["detail"] and answer.headers["retry-after"] == "60"
    assert api.get(done["result_url"]).json() == result  # reads still work; nothing was evicted
    assert api.get("/api/v1/healthz").status_code == 200

    # a worker started now gets ready, or (no room for its own control queue's binding) says it waits
    late = start_worker("full-b", ready=(" ready.", "Redis is full (maxmemory): cannot bind queue"),
                        REDIS_URL=full_redis.url, PIDFLOW_WORKER_PRELOAD="0")
    time.sleep(3)
    assert late.process.poll() is None, late.log()[-2000:]


def test_a_full_redis_still_answers_reads_and_takes_deletes_and_failures(full_redis):
    """Under a full Redis: a running job's status (its lost-task check reads through a pipeline: inside a
    MULTI a full Redis refuses even reads), a refused write inside a Lua script (Redis 7: ResponseError)
    seen as "full", a job failed (its data dropped first) and a delete that frees memory."""
    from worker import jobs
    from worker.cache import JobStore
    from worker.heartbeat import RUNNING_PREFIX
    from worker.settings import WorkerSettings

    client = redis.Redis.from_url(full_redis.url)
    api = TestClient(create_app(service=AnalysisService(Settings(redis_url=full_redis.url)), with_ui=False))
    store = JobStore(client, WorkerSettings.from_env())
    running, doomed = (api.post("/api/v1/analyses", json={**JOB, "seed": seed}).json()["id"] for seed in (1, 2))
    for job_id in (running, doomed):
        client.hset(f"pidflow:job:{job_id}", mapping={"state": "running", "stage": "extract"})
        client.hset(f"pidflow:features:{job_id}", "baseline", b"x" * 200_000)
        client.hset(RUNNING_PREFIX + job_id, "extract", "gone-worker@host:1")  # no heartbeat: a lost task
    _full_now(client)

    status = api.get(f"/api/v1/analyses/{running}")
    assert status.status_code == 200 and status.json()["state"] == "running", status.text
    assert "is gone" in status.json()["message"]
    attempt = store.get(doomed)["attempt"]
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        store.progress(doomed, attempt, "extract", 0.5, "half")
    store.drop_work(doomed, attempt)
    assert store.fail(doomed, attempt, "too big") and jobs.status(doomed).state == "failed"
    assert not client.exists(f"pidflow:features:{doomed}")

    _full_now(client)
    before = client.info("memory")["used_memory"]
    deleted = api.delete(f"/api/v1/analyses/{running}")
    assert deleted.status_code in (200, 204), deleted.text
    assert api.get(f"/api/v1/analyses/{running}").status_code == 404
    assert client.info("memory")["used_memory"] < before - 100_000  # its features went with it


def test_a_worker_started_on_a_redis_full_from_the_start_waits_instead_of_exiting(tmp_path, monkeypatch):
    """No queue bindings yet and no room for them: before, the worker exited at once ("Unrecoverable
    error: OutOfMemoryError"); now it stays up, says why, and binds once there is room."""
    import os
    import subprocess
    import sys

    from app.redis_local import die_with_parent
    from tests.worker.conftest import ROOT

    with LocalRedis(directory=tmp_path / "fresh", maxmemory="8mb") as server:
        client = redis.Redis.from_url(server.url)
        junk = _fill(client)
        log_path = tmp_path / "late.log"
        env = {**os.environ, "REDIS_URL": server.url, "PIDFLOW_WORKER_PRELOAD": "0", "OMP_NUM_THREADS": "1"}
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                                       "--pool=solo", "-Q", "gpu,cpu", "--loglevel=INFO", "-n", "late@%h",
                                       "--without-mingle", "--without-gossip"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        try:
            deadline = time.monotonic() + 60
            while "Redis is full (maxmemory): cannot bind queue" not in log_path.read_text(errors="replace"):
                assert worker.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
                time.sleep(0.3)
            client.delete(*[f"junk:{i}" for i in range(junk)])  # room again: it binds and gets ready
            while " ready." not in log_path.read_text(errors="replace"):
                assert worker.poll() is None and time.monotonic() < deadline + 30, \
                    log_path.read_text(errors="replace")[-3000:]
                time.sleep(0.3)
        finally:
            worker.kill()
            worker.wait(10)


def test_messages_carry_no_absolute_server_paths():
    assert redact_paths("no such file: '/srv/pidflow/data/gqa/images/n123.jpg'") == \
        "no such file: '.../n123.jpg'"
    assert redact_paths("FileNotFoundError: /home/me/.cache/huggingface/hub/x/config.json missing") == \
        "FileNotFoundError: .../config.json missing"
    assert redact_paths("layers [7] outside 0..6; see https://example.org/a/b") == \
        "layers [7] outside 0..6; see https://example.org/a/b"
