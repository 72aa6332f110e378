"""Health: Redis reachable, live workers (their heartbeats), tasks lost with a dead worker."""

from __future__ import annotations

import importlib

import redis

from app.services.base import ServiceBase


class Health(ServiceBase):
    """What /healthz reports."""

    def health(self) -> dict:
        """Redis reachability and live workers (their Redis heartbeats, worker/heartbeat.py; no ping, so
        a busy worker counts): {"redis": bool, "workers": int | None (unknown), "lost_tasks": tasks whose
        worker died and that no worker has taken up again yet, "ok": Redis up, a worker, nothing lost}."""
        try:
            redis_ok = bool(self.redis.ping())
        except redis.exceptions.RedisError:
            redis_ok = False
        workers = lost = None
        if redis_ok:
            try:
                heartbeat = importlib.import_module("worker.heartbeat")
                workers = heartbeat.live_workers(self.redis)
                lost = heartbeat.lost_task_count(self.redis)
            except (ImportError, redis.exceptions.RedisError):
                workers = None
        return {"ok": redis_ok and bool(workers) and not lost, "redis": redis_ok, "workers": workers,
                "lost_tasks": lost}
