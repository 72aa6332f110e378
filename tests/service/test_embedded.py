"""`pidflow serve` as a user runs it: starts a private Redis and a worker, serves /healthz, and on
SIGTERM stops every child it started (no orphans)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.redis_local import free_port
from app.served import spawn, wait_healthy

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
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
