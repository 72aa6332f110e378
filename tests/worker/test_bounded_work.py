"""Bounded, cancellable, recoverable work with real workers and a real Redis, as issue 12's attacks probe
it: the delete that must stop a running task within seconds, the task time limit, the worker killed
under the DEFAULT settings (job done within a minute, status and healthz saying the worker is gone), and
a live long task that is never redelivered."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.worker.conftest import wait_for_job
from tests.worker.test_recovery import _unacked_tasks, _until
from worker import jobs

pytestmark = pytest.mark.slow
NO_PRELOAD = {"PIDFLOW_WORKER_PRELOAD": "0"}
# One analyze task per run that stays inside its bootstrap loop for many seconds (~1 ms a round for the
# 7 layers on the 2-core machine).
BUSY = {"model": "demo", "tasks": ["color"], "n_questions": 200, "dims": [4, 4, 3], "gaussianize": False}
SMALL = {"model": "demo", "tasks": ["color"], "n_questions": 40, "dims": [2, 2, 1], "gaussianize": False, "bootstrap": 0}


def _in_analyze(client, job_id: str) -> bool:
    return jobs.status(job_id).stage == "analyze" and [n for n, _ in _unacked_tasks(client)] == ["pidflow.analyze"]


def test_a_delete_stops_the_running_task_within_seconds(start_worker, client):
    worker = start_worker("cancel", **NO_PRELOAD)
    doomed = jobs.submit({**BUSY, "bootstrap": 200_000, "seed": 41})  # minutes of bootstrap
    _until(lambda: _in_analyze(client, doomed.id), 90, "the bootstrap to start", poll_s=0.05)
    time.sleep(1.0)
    assert jobs.delete(doomed.id)
    deleted = time.monotonic()
    _until(lambda: "skipped (deleted, restarted or finished)" in worker.log(), 10, "the task to stop")
    stopped_after = time.monotonic() - deleted
    behind = jobs.submit({**SMALL, "seed": 42})  # the worker is free again at once
    info, _ = wait_for_job(jobs, behind.id, timeout_s=60)
    assert info.state == "succeeded" and stopped_after < 3.0, stopped_after


def test_a_task_over_its_time_limit_fails_its_job_with_the_reason(start_worker):
    start_worker("limited", PIDFLOW_TASK_TIME_LIMIT_S="2", **NO_PRELOAD)
    job = jobs.submit({**BUSY, "bootstrap": 200_000, "seed": 43})
    started = time.monotonic()
    info, _ = wait_for_job(jobs, job.id, timeout_s=90)
    assert info.state == "failed" and "ran longer than 2 s (PIDFLOW_TASK_TIME_LIMIT_S)" in info.error
    assert time.monotonic() - started < 60


def test_a_worker_killed_under_the_default_settings_costs_the_job_under_a_minute(start_worker, client,
                                                                                 redis_server):
    """No PIDFLOW_VISIBILITY_TIMEOUT_S / RESTORE_INTERVAL here: the defaults (issue 12: with the old
    defaults the killed batch came back after 3,600 s, silently)."""
    health = TestClient(create_app(service=AnalysisService(Settings(redis_url=redis_server.url)), with_ui=False))
    doomed = start_worker("doomed-default", **NO_PRELOAD)
    job = jobs.submit({**BUSY, "bootstrap": 500, "seed": 44})
    _until(lambda: _in_analyze(client, job.id), 90, "the analyze task to start", poll_s=0.05)
    doomed.kill()
    killed = time.monotonic()
    _until(lambda: health.get("/api/v1/healthz").json()["lost_tasks"] == 1, 20, "healthz to see the lost task")
    assert health.get("/api/v1/healthz").json()["ok"] is False
    status = jobs.status(job.id)
    assert status.state == "running" and "is gone (killed or out of memory)" in status.message
    start_worker("rescuer-default", **NO_PRELOAD)

    def taken_up_again() -> bool:  # the killed analyze task's body started a second time
        state = client.hgetall(f"pidflow:job:{job.id}")
        return any(key.startswith(b"deliveries:") and key != b"deliveries:extract" and value == b"2"
                   for key, value in state.items())

    _until(taken_up_again, 90, "the killed task to be delivered again", poll_s=0.1)
    took = time.monotonic() - killed  # the redelivery delay, whatever the machine's speed of the work itself
    assert took < 60, f"the killed task came back {took:.0f} s after the kill"
    info, _ = wait_for_job(jobs, job.id, timeout_s=120)
    assert info.state == "succeeded", info.error
    assert client.hget(f"pidflow:job:{job.id}", "results_written") == b"1"
    assert health.get("/api/v1/healthz").json()["lost_tasks"] == 0


def test_a_live_long_task_is_never_redelivered(start_worker, client):
    """Visibility timeout 2 s, a task of several seconds (500 bootstrap rounds) and an idle second worker restoring every second: the live
    worker's beat renews its lease, so the task runs once (before leases, it ran again every 2 s)."""
    fast = {"PIDFLOW_VISIBILITY_TIMEOUT_S": "2", "PIDFLOW_RESTORE_INTERVAL_S": "1", **NO_PRELOAD}
    start_worker("long-a", **fast)
    job = jobs.submit({**BUSY, "bootstrap": 500, "seed": 45})
    _until(lambda: _in_analyze(client, job.id), 90, "the analyze task to start", poll_s=0.05)
    start_worker("idle-b", **fast)
    info, _ = wait_for_job(jobs, job.id, timeout_s=120)
    assert info.state == "succeeded", info.error
    state = client.hgetall(f"pidflow:job:{job.id}")
    assert float(state[b"updated_at"]) - float(state[b"created_at"]) > 4  # the task outlived the timeout
    assert state[b"deliveries:baseline:0"] == b"1" and state[b"results_written"] == b"1"
