"""Fixtures of the job-layer tests: a private redis-server (append-only file, so it can be stopped and
restarted with its data) and real Celery worker subprocesses, all killed at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from app.redis_local import LocalRedis, die_with_parent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server on a free port; REDIS_URL points at it for the whole session."""
    server = LocalRedis(directory=tmp_path_factory.mktemp("redis"), appendonly=True).start()
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = server.url
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


class WorkerProcess:
    """`python -m celery -A worker.celery_app worker --pool=solo` taking `queues`, its output in a log file."""

    def __init__(self, name: str, log_path: Path, env: dict, queues: str = "gpu,cpu"):
        self.name, self.log_path, self.env, self.queues = name, log_path, env, queues
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120, ready: tuple[str, ...] = (" ready.",)) -> WorkerProcess:
        """Start it and wait until its log shows one of `ready` (by default Celery's " ready." line)."""
        command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
                   "-Q", self.queues, "--loglevel=INFO", "-n", f"{self.name}@%h", "--without-mingle",
                   "--without-gossip"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while f"{self.name}@" not in self.log() or not any(line in self.log() for line in ready):
            assert self.process.poll() is None, f"worker {self.name} exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"worker {self.name} not ready:\n{self.log()[-3000:]}"
            time.sleep(0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement, no message handed back."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def purge_broker(url: str) -> None:
    """Drop the queued and unacknowledged task messages earlier tests left in the session's Redis (a
    stopped or killed worker's tasks go back to the queue): the next test's workers would take them first.
    Their jobs' running-task entries go too, so /healthz counts only this test's lost tasks."""
    client = redis.Redis.from_url(url)
    try:
        patterns = ("gpu*", "cpu*", "unacked*", "pidflow:running:*")
        stale = [key for pattern in patterns for key in client.scan_iter(match=pattern)]
        if stale:
            client.delete(*stale)
    finally:
        client.close()


@pytest.fixture
def start_worker(redis_server, tmp_path):
    """start_worker(name, ready=(" ready.",), queues="gpu,cpu", **env) -> a ready WorkerProcess; every one
    started is stopped at teardown. The broker starts empty: no task of an earlier test is waiting for these
    workers."""
    purge_broker(redis_server.url)
    started: list[WorkerProcess] = []

    def start(name: str, ready: tuple[str, ...] = (" ready.",), queues: str = "gpu,cpu",
              **extra_env: str) -> WorkerProcess:
        env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", **extra_env}
        worker = WorkerProcess(name, tmp_path / f"{name}.log", env, queues)
        started.append(worker)
        return worker.start(ready=ready)

    yield start
    for worker in started:
        worker.stop()


def wait_for_job(jobs, job_id: str, timeout_s: float = 120, poll_s: float = 0.2) -> tuple[object, list]:
    """Poll jobs.status until succeeded or failed: (final JobInfo, [(state, stage, progress), ...])."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while True:
        info = jobs.status(job_id)
        seen.append((info.state, info.stage, info.progress))
        if info.state in ("succeeded", "failed"):
            return info, seen
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {seen[-5:]}"
        time.sleep(poll_s)
