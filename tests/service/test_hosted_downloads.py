"""The stalled download of issue 12: a configured model that is not in the local cache, against a hub
that accepts connections and never answers. A hosted server refuses it at submission (it would download
inside a task, with no time limit); fetching it is a separate step that gives up at its timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_hub():
    """A TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


def test_a_hosted_server_refuses_a_model_it_would_have_to_download(redis_url, silent_hub, tmp_path,  # noqa: F811
                                                                    monkeypatch):
    url, connections = silent_hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty model cache
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha",), models=("demo", "acme/vlm-7b"))
    refused = api.post("/api/v1/analyses", json={"model": "acme/vlm-7b", "bootstrap": 0},
                       headers={"Authorization": "Bearer alpha"})
    assert refused.status_code == 422 and connections == []  # refused without ever calling the hub
    assert "not in this server's model cache" in refused.json()["detail"]
    assert "pidflow fetch-model acme/vlm-7b" in refused.json()["detail"]
    assert api.post("/api/v1/analyses", json={"bootstrap": 0}, headers={"Authorization": "Bearer alpha"}
                    ).status_code == 202  # the shipped demo model needs no download


def test_fetching_a_model_is_a_separate_step_that_gives_up_at_its_timeout(silent_hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": silent_hub[0], "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "app.cli", "fetch-model", "acme/vlm-7b", "--timeout", "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 2 and "could not fetch acme/vlm-7b" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and took < 30, took
    assert silent_hub[1]  # it did try the hub
