"""`pidflow serve` as a user runs it: starts a private Redis and a worker, serves /healthz, and on
SIGTERM stops every child it started (no orphans)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.redis_local import free_port
from app.served import spawn, stop_served, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_serve_starts_answers_and_stops_all_children():
    port = free_port()
    proc = spawn(port, stdout=subprocess.PIPE)
    try:
        health = wait_healthy(f"http://127.0.0.1:{port}", proc, workers=0, timeout_s=60)
        assert health["redis"] is True and health["workers"] is not None
        children = children_of(proc.pid)
        names = {Path(f"/proc/{c}/comm").read_text().strip() for c in children if alive(c)}
        assert "redis-server" in names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        output = proc.stdout.read()
        assert f"serving on http://127.0.0.1:{port}/" in output and "[pidflow] stopped" in output
        assert "Traceback" not in output.split("[pidflow] serving")[0]
        time.sleep(0.5)
        assert not [c for c in children if alive(c)], "children outlived pidflow serve"
    finally:
        stop_served(proc)


def test_serve_refuses_a_busy_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def _post(base: str, body: dict) -> dict:
    import httpx

    response = httpx.post(f"{base}/api/v1/analyses", json=body, timeout=30)
    assert response.status_code in (200, 202), response.text
    return response.json()


def _wait_state(base: str, job_id: str, state: str, timeout_s: float = 90) -> dict:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{base}/api/v1/analyses/{job_id}", timeout=10).json()
        if job["state"] == state:
            return job
        assert job["state"] != "failed" and time.monotonic() < deadline, job
        time.sleep(0.3)


SMALL = {"n_questions": 30, "dims": [2, 2, 1], "gaussianize": False, "bootstrap": 0}


@pytest.mark.slow
def test_a_restart_of_serve_loses_no_job_result_or_queued_task_and_a_killed_worker_is_restarted(tmp_path):
    """The attacks of issue 12: stop `pidflow serve` and start it again on the same data folder. The
    finished result, the accepted job that had no worker yet, and its queued task all survive; the
    folder (append-only file) stays after exit; a second server on the same folder is refused. Then
    kill -9 its worker: serve starts a new one and the next job runs."""
    import httpx

    data = tmp_path / "data"
    env = {"PIDFLOW_DATA_DIR": str(data), "PIDFLOW_WORKER_PRELOAD": "0"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = spawn(port, workers=1, env=env, stdout=subprocess.PIPE)
    try:
        wait_healthy(base, first, workers=1, timeout_s=120)
        done = _post(base, SMALL)
        _wait_state(base, done["id"], "succeeded")
        result = httpx.get(f"{base}/api/v1/analyses/{done['id']}/result", timeout=10).json()
        # no worker for this one: it stays queued when the server stops
        stop_served(first)
        assert first.returncode == 0 and f"kept in {data / 'redis'}" in first.stdout.read()
        assert (data / "redis").is_dir()
        second = spawn(port, workers=0, env=env)
        wait_healthy(base, second, workers=0, timeout_s=60)
        clash = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()),
                                "--workers", "0", "--data-dir", str(data)], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env={**_env_without_redis(), "PIDFLOW_PREWARM": "0"})
        assert clash.returncode == 2 and "another pidflow server keeps its data in" in clash.stderr
        queued = _post(base, {**SMALL, "seed": 1})
        assert queued["state"] == "queued"
        assert httpx.get(f"{base}/api/v1/analyses/{done['id']}/result", timeout=10).json() == result
        stop_served(second)
        third = spawn(port, workers=1, env=env, stdout=subprocess.PIPE)
        wait_healthy(base, third, workers=1, timeout_s=120)
        assert httpx.get(f"{base}/api/v1/analyses/{done['id']}/result", timeout=10).json() == result
        _wait_state(base, queued["id"], "succeeded")  # its task message survived in the append-only file
        # kill -9 the worker: serve restarts it, and the next job runs
        (worker,) = [c for c in children_of(third.pid) if alive(c) and "celery" in _cmdline(c)]
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            restarted = [c for c in children_of(third.pid) if alive(c) and "celery" in _cmdline(c)]
            health = httpx.get(f"{base}/api/v1/healthz", timeout=10).json()
            if restarted and restarted != [worker] and health["workers"] == 1:
                break
            assert time.monotonic() < deadline, f"the killed worker was not restarted: {health}"
            time.sleep(0.3)
        _wait_state(base, _post(base, {**SMALL, "seed": 2})["id"], "succeeded")
        stop_served(third)
        assert "worker 0 exited (status -9); restarting it" in third.stdout.read()
    finally:
        for proc in (first, locals().get("second"), locals().get("third")):
            if proc is not None:
                stop_served(proc)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _env_without_redis() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
