"""Running the server for tests and benchmarks: `pidflow serve` as a child process (private Redis, wait
until /api/v1/healthz shows enough live workers, SIGTERM then SIGKILL at the end), or an ASGI app in
a uvicorn thread of this process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from app.embedded import stop_process
from app.redis_local import free_port

ROOT = Path(__file__).resolve().parents[1]
STACK = ("worker.jobs", "worker.celery_app", "pidcore.pipeline.analysis", "pidcore.demo", "pidcore.data")


def stack_available() -> bool:
    """Whether the job layer, the analysis and the demo model are importable here."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in STACK)
    except ModuleNotFoundError:
        return False


def spawn(port: int, *, workers: int = 1, env: dict | None = None, stdout=subprocess.DEVNULL,
          command: list[str] | None = None, cwd: str | Path = ROOT) -> subprocess.Popen:
    """Start `pidflow serve --port PORT --workers N` (or `command`) in `cwd` (the checkout whose code
    runs) without REDIS_URL (so it starts a private Redis), without the start-up demo analysis and with
    OMP_NUM_THREADS=1 unless `env` says; its data in a fresh temporary folder unless `env` names
    PIDFLOW_DATA_DIR (the folder is `process.data_dir`; `stop_served` removes a temporary one)."""
    child_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    child_env.update({"PIDFLOW_PREWARM": "0", "OMP_NUM_THREADS": "1", **(env or {})})
    temporary = "PIDFLOW_DATA_DIR" not in (env or {})
    if temporary:
        child_env["PIDFLOW_DATA_DIR"] = tempfile.mkdtemp(prefix="pidflow-data-")
    command = command or [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, cwd=cwd, env=child_env, stdout=stdout,
                               stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
                               text=True)
    process.data_dir = Path(child_env["PIDFLOW_DATA_DIR"])
    process.temporary_data = temporary
    return process


def stop_served(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a `spawn`ed server (SIGTERM, then SIGKILL) and remove its data folder if it was temporary."""
    stop_process(process, timeout_s=timeout_s)
    if getattr(process, "temporary_data", False):
        shutil.rmtree(process.data_dir, ignore_errors=True)


def wait_healthy(base_url: str, process: subprocess.Popen, *, workers: int = 1, timeout_s: float = 120) -> dict:
    """Poll `<base_url>/api/v1/healthz` until Redis is up and at least `workers` workers are live; the
    health dict. RuntimeError when the process exits first, TimeoutError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    health: dict = {}
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} during start-up")
        try:
            health = httpx.get(f"{base_url}/api/v1/healthz", timeout=5).json()
            if health.get("redis") and (health.get("workers") or 0) >= workers:
                return health
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url} not ready within {timeout_s} s (last health: {health})")
        time.sleep(0.2)


@contextmanager
def served(*, workers: int = 1, env: dict | None = None, timeout_s: float = 120) -> Iterator[str]:
    """Run `pidflow serve` on a free port with `workers` workers; yield its base URL once they are live."""
    port = free_port()
    process = spawn(port, workers=workers, env=env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, process, workers=workers, timeout_s=timeout_s)
        yield base_url
    finally:
        stop_served(process, timeout_s=30)


@contextmanager
def in_thread(asgi_app, *, host: str = "127.0.0.1", timeout_s: float = 20) -> Iterator[str]:
    """Serve `asgi_app` with uvicorn in a daemon thread on a free port; yield its base URL."""
    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(asgi_app, host=host, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {host}:{port} within {timeout_s} s")
            time.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
