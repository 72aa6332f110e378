"""Workers and the server refuse to start on a Redis whose maxmemory-policy evicts keys (it would lose
queued work and results without a word), saying which setting to change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis
from fastapi.testclient import TestClient

from app.redis_local import LocalRedis
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import FakeJobs
from worker.heartbeat import eviction_problem


@pytest.fixture(scope="module")
def evicting():
    """A Redis with maxmemory-policy allkeys-lru (put back to noeviction by the tests that need it)."""
    with LocalRedis() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        yield server.url, client


def test_the_policy_is_read_and_named(evicting):
    url, client = evicting
    problem = eviction_problem(client)
    assert problem.startswith("Redis's maxmemory-policy is allkeys-lru: when Redis fills up it evicts keys")
    assert "CONFIG SET maxmemory-policy noeviction" in problem
    client.config_set("maxmemory-policy", "volatile-ttl")  # pidflow's jobs and results all have TTLs
    assert "volatile-ttl" in eviction_problem(client)
    client.config_set("maxmemory-policy", "noeviction")
    assert eviction_problem(client) is None
    client.config_set("maxmemory-policy", "allkeys-lru")


def test_the_server_does_not_start(evicting):
    url, client = evicting
    service = AnalysisService(Settings(redis_url=url), jobs=FakeJobs(client), redis_client=client)
    with pytest.raises(RuntimeError, match="pidflow server not started: Redis's maxmemory-policy is allkeys-lru"):
        with TestClient(create_app(service=service, with_ui=False)):
            pass


def test_a_worker_does_not_start(evicting):
    url, _ = evicting
    env = {**os.environ, "REDIS_URL": url, "PIDFLOW_WORKER_PRELOAD": ""}
    worker = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "solo",
                             "--loglevel", "INFO", "-n", "policy-test@%h"], env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode != 0
    assert "pidflow worker not started: Redis's maxmemory-policy is allkeys-lru" in worker.stderr
    assert "maxmemory-policy noeviction" in worker.stderr


def test_pidflow_serve_does_not_start(evicting, monkeypatch, capsys):
    from app import embedded
    from app.redis_local import free_port

    monkeypatch.setenv("REDIS_URL", evicting[0])
    handler = signal.getsignal(signal.SIGTERM)  # serve() sets its own
    try:
        with pytest.raises(SystemExit, match="pidflow serve: not started: Redis's maxmemory-policy is allkeys-lru"):
            embedded.serve(port=free_port(), workers=1)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert "[pidflow] serving" not in capsys.readouterr().out  # no worker, no server was started
