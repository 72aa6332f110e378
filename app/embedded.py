"""`pidflow serve`: everything on one machine — Redis (REDIS_URL, else a private one), Celery worker
subprocesses and uvicorn in this process. Ctrl-C or SIGTERM stops every child; none outlives us."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from app.redis_local import LocalRedis, default_data_dir, die_with_parent

log = logging.getLogger("pidflow.serve")


def worker_command(index: int) -> list[str]:
    """The Celery worker command (override with PIDFLOW_WORKER_CMD; `{index}` is replaced)."""
    custom = os.environ.get("PIDFLOW_WORKER_CMD")
    if custom:
        return shlex.split(custom.replace("{index}", str(index)))
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
            "-Q", "gpu,cpu", "--loglevel=WARNING", "-n", f"pidflow{index}@%h"]


def _check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another with --port") from None


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s` seconds; returns once the process is reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _prewarm(base_url: str, server: uvicorn.Server) -> None:
    """Submit the default demo analysis once the server is up, so the first page shows a result."""
    import httpx

    from app.service import DEFAULT_REQUEST

    while not server.started and not server.should_exit:
        time.sleep(0.1)
    if server.should_exit:
        return
    try:
        response = httpx.post(f"{base_url}/api/v1/analyses", json=DEFAULT_REQUEST, timeout=30)
        log.warning("default demo analysis: %s %s", response.status_code, response.json().get("state"))
    except Exception as exc:  # noqa: BLE001 - a failed warm-up must not stop the server
        log.warning("could not submit the default demo analysis: %s", exc)


class _Server(uvicorn.Server):
    """uvicorn that stops on SIGINT/SIGTERM without re-raising the signal, so our cleanup runs."""

    @contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, data_dir: str | None = None) -> int:
    """Run until Ctrl-C / SIGTERM; returns the exit status. Without REDIS_URL, the private Redis keeps
    jobs, results and queued tasks in `data_dir` (default: `default_data_dir()`), which stays after exit."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if workers < 0:
        raise ValueError("--workers must be 0 or more")
    _check_port(host, port)
    signal.signal(signal.SIGTERM, _interrupt)  # before uvicorn runs: stop like Ctrl-C, cleaning up
    local_redis = None
    children: list[subprocess.Popen] = []
    try:
        if not os.environ.get("REDIS_URL"):
            folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
            local_redis = LocalRedis(directory=folder / "redis", appendonly=True,
                                     maxmemory=os.environ.get("PIDFLOW_REDIS_MAXMEMORY") or None).start()
            os.environ["REDIS_URL"] = local_redis.url
            print(f"[pidflow] started Redis at {local_redis.url}, data kept in {local_redis.directory} "
                  f"(append-only file; --data-dir or PIDFLOW_DATA_DIR to move it)", flush=True)
        else:
            print(f"[pidflow] using Redis at {os.environ['REDIS_URL']}", flush=True)
        for index in range(workers):
            children.append(subprocess.Popen(worker_command(index), env=dict(os.environ),
                                             preexec_fn=die_with_parent))
        print(f"[pidflow] started {workers} worker(s): {' '.join(worker_command(0)) if workers else '-'}", flush=True)

        from app.server import create_app

        server = _Server(uvicorn.Config(create_app(), host=host, port=port, log_level="warning",
                                        access_log=False, timeout_graceful_shutdown=5))
        base_url = f"http://{host}:{port}"
        if os.environ.get("PIDFLOW_PREWARM", "1") != "0":
            threading.Thread(target=_prewarm, args=(base_url, server), daemon=True).start()
        print(f"[pidflow] serving on {base_url}/  (API docs: {base_url}/api/v1/docs; Ctrl-C stops)", flush=True)
        server.run()
        return 0
    finally:
        for child in children:
            stop_process(child)
        if local_redis is not None:
            local_redis.stop()
            os.environ.pop("REDIS_URL", None)
        print("[pidflow] stopped", flush=True)
