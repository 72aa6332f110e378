"""What every resource of the service shares: its errors, the job-status dict, and the state and plumbing
(the job layer, Redis failures turned into ServiceUnavailable / StorageFull) of `ServiceBase`."""

from __future__ import annotations

import dataclasses
import importlib
from datetime import datetime
from typing import Any

import redis

from app.registry import Registry
from app.result_cache import LRU
from app.settings import Settings
from app.uploads import FeatureUploads
from worker.messages import FULL_REDIS, is_full_redis


class JobNotReady(Exception):
    """The analysis exists but has no result yet; `.job` holds its status dict."""

    def __init__(self, job: dict):
        super().__init__(f"analysis {job.get('id')} is {job.get('state')}, no result yet")
        self.job = job


class ServiceUnavailable(RuntimeError):
    """Redis, the broker or the workers cannot be reached."""


class StorageFull(ServiceUnavailable):
    """Redis refuses writes (maxmemory reached, noeviction): HTTP 507; reads still work."""


class QuotaExceeded(Exception):
    """A token has as many analyses queued or running as it may (HTTP 429)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def job_to_dict(info: Any) -> dict:
    """A worker `JobInfo` (dataclass or dict) as a JSON-ready dict."""
    raw = dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info)
    return {key: _jsonable(value) for key, value in raw.items()}


class ServiceBase:
    """The state the resource classes share (set up by app.service.AnalysisService) and the plumbing they
    all call through."""

    settings: Settings
    redis: Any
    registry: Registry
    uploads: FeatureUploads
    _jobs: Any
    _documents: LRU  # finished results by analysis id (app.services.results)
    _claim_lock: Any
    _model_info: dict[str, dict]
    recheck_s: float

    @property
    def jobs(self) -> Any:
        if self._jobs is None:
            try:
                self._jobs = importlib.import_module("worker.jobs")
            except ImportError as exc:
                raise ServiceUnavailable(f"the job layer (worker.jobs) is not installed: {exc}") from exc
        return self._jobs

    def _call(self, fn, *args):
        """Run a jobs/Redis call, turning connection failures into ServiceUnavailable."""
        try:
            return fn(*args)
        except redis.exceptions.ResponseError as exc:  # a full Redis, also inside a script (Redis 7)
            if is_full_redis(exc):
                raise StorageFull(FULL_REDIS) from exc
            raise
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ServiceUnavailable(f"Redis is not reachable at {self.settings.redis_url}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("kombu") and "OperationalError" in type(exc).__name__:
                if "maxmemory" in str(exc):
                    raise StorageFull(FULL_REDIS) from exc
                raise ServiceUnavailable(f"the job broker is not reachable: {exc}") from exc
            raise
