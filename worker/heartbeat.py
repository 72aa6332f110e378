"""Worker liveness in Redis, independent of Celery's control.ping (a busy `--pool=solo` worker answers no
ping). Each ready worker refreshes `pidflow:worker:<name>` (expires after PIDFLOW_HEARTBEAT_TTL_S) from a
daemon thread and lists `<name>` in the set `pidflow:workers`; a clean shutdown removes both, a killed
worker's key expires. `live_workers(client)` counts the names whose key still exists (one round trip).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis
from celery.signals import worker_ready, worker_shutdown

from worker.cache import connect
from worker.settings import WorkerSettings

log = logging.getLogger("pidflow.worker")
KEY_PREFIX = "pidflow:worker:"
INDEX = "pidflow:workers"

# KEYS: index. ARGV: key prefix. Counts members whose key exists and drops the others from the index.
_COUNT = """
local live = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. name) == 1 then live = live + 1 else redis.call('SREM', KEYS[1], name) end
end
return live
"""


def live_workers(client: redis.Redis) -> int:
    """Workers whose heartbeat has not expired. Raises redis errors (ConnectionError, TimeoutError)."""
    return int(client.eval(_COUNT, 1, INDEX, KEY_PREFIX))


class Heartbeat:
    """Refreshes one worker's key every `ttl_s / 3` seconds from a daemon thread until `stop()`."""

    def __init__(self, client: redis.Redis, name: str, ttl_s: float):
        if ttl_s <= 0:
            raise ValueError(f"heartbeat TTL must be positive, got {ttl_s}")
        self.client, self.name, self.ttl_s = client, name, ttl_s
        self.key = KEY_PREFIX + name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info = json.dumps({"name": name, "host": socket.gethostname(), "pid": os.getpid(),
                                 "started_at": time.time()})

    def beat(self) -> None:
        """Write the key (with its TTL) and the index entry together."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, self._info, px=max(1, round(1000 * self.ttl_s)))
        pipe.sadd(INDEX, self.name)
        pipe.execute()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.exceptions.RedisError as exc:  # Redis away: keep trying, the key expires meanwhile
                log.warning("heartbeat of %s not written: %s", self.name, exc)
            if self._stop.wait(self.ttl_s / 3):
                return

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="pidflow-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and remove the key and index entry (best effort: Redis may be away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            pipe.srem(INDEX, self.name)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("heartbeat of %s not removed (it expires in %.0f s): %s", self.name, self.ttl_s, exc)


_current: Heartbeat | None = None


@worker_ready.connect
def _start(sender=None, **_) -> None:
    """In the worker's main process once it consumes: beat as `<celery hostname>:<pid>`."""
    global _current
    settings = WorkerSettings.from_env()
    name = f"{getattr(sender, 'hostname', None) or socket.gethostname()}:{os.getpid()}"
    _current = Heartbeat(connect(settings), name, settings.heartbeat_ttl_s).start()


@worker_shutdown.connect
def _stop(**_) -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None
