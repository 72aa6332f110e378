"""Worker liveness through Redis heartbeats: a busy solo-pool worker still counts in /api/v1/healthz, a
killed one drops out within the heartbeat TTL, a cleanly stopped one at once."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from worker import jobs
from worker.heartbeat import INDEX, KEY_PREFIX, Heartbeat, live_workers

TTL_S = 2.0
# All 7 layers in one analyze task with 30,000 bootstrap rounds each (~1 ms a round for the 7 layers on
# the 2-core machine, 2026-11-26): the worker is inside one task for ~30 s, far longer than the sampling
# below; it is killed mid-task.
BUSY = {"model": "demo", "tasks": ["color"], "n_questions": 200, "dims": [4, 4, 3], "gaussianize": False,
        "bootstrap": 30_000, "seed": 31}


def _wait(condition, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_heartbeat_counts_expires_and_is_removed_on_stop(client):
    _wait(lambda: live_workers(client) == 0, 20, "heartbeats of earlier tests to expire")
    beating = Heartbeat(client, "unit-a:1", ttl_s=0.5).start()
    lapsing = Heartbeat(client, "unit-b:2", ttl_s=0.5)
    lapsing.beat()  # one beat, no thread: expires after 0.5 s
    assert live_workers(client) == 2
    assert client.pttl(KEY_PREFIX + "unit-a:1") <= 500
    time.sleep(0.8)
    assert live_workers(client) == 1  # the refreshed one only; the lapsed name left the index
    assert client.smembers(INDEX) == {b"unit-a:1"}
    beating.stop()
    assert live_workers(client) == 0 and not client.exists(KEY_PREFIX + "unit-a:1")
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(client, "bad", ttl_s=0)


@pytest.mark.slow
def test_healthz_counts_a_busy_worker_and_drops_a_killed_one_within_the_ttl(start_worker, redis_server, client):
    _wait(lambda: live_workers(client) == 0, 20, "heartbeats of earlier tests to expire")
    api = TestClient(create_app(service=AnalysisService(Settings(redis_url=redis_server.url)), with_ui=False))

    def health() -> dict:
        return api.get("/api/v1/healthz").json()

    assert health() == {"ok": False, "redis": True, "workers": 0, "lost_tasks": 0}
    worker = start_worker("busy", PIDFLOW_HEARTBEAT_TTL_S=str(TTL_S), PIDFLOW_LAYER_BATCH="8")
    assert health() == {"ok": True, "redis": True, "workers": 1, "lost_tasks": 0}
    job = jobs.submit(BUSY)
    try:
        _wait(lambda: jobs.status(job.id).stage == "analyze", 90, "the analysis to start")
        samples = []
        for _ in range(10):  # 2 s inside the analyze task, longer than the TTL
            started = time.monotonic()
            samples.append((health()["workers"], time.monotonic() - started < 0.5))
            time.sleep(0.2)
        assert jobs.status(job.id).state == "running"  # still busy: every sample was taken mid-job
        assert samples == [(1, True)] * 10  # counted, and answered fast (no 1 s ping timeout)
        worker.kill()
        gone_after = _wait(lambda: health()["workers"] == 0, TTL_S + 2, "the killed worker to drop out")
        assert gone_after <= TTL_S + 0.5 and health()["ok"] is False
    finally:
        jobs.delete(job.id)

    calm = start_worker("calm", PIDFLOW_HEARTBEAT_TTL_S="30")
    assert health()["workers"] == 1
    calm.stop()  # warm shutdown removes the key: no waiting for the 30 s TTL
    assert health()["workers"] == 0
