"""Worker and job-layer settings, read from the environment (REDIS_URL and PIDFLOW_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pidcore.extract.loading import LoadOptions

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DAY_S = 24 * 3600


def env_number(env: dict, name: str, default: float, cast=int, minimum: float = 1):
    """``env[name]`` as ``cast`` (int or float), ``default`` when unset or empty; ValueError saying the
    variable's name when it is not a number or below ``minimum``."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the Celery app, the tasks and `worker.jobs` read; times in seconds."""

    redis_url: str = DEFAULT_REDIS_URL
    visibility_timeout_s: int = 30  # an unacknowledged task not renewed by a live worker's beat is redelivered
    restore_interval_s: int = 10  # how often a worker looks for such tasks
    stale_s: int = 2 * 3600 + 600  # a queued/running job with no update for this long is failed
    layer_batch: int = 8  # layers per analyze task (each refits the target: fewer, larger batches on one worker)
    result_ttl_s: int = 30 * DAY_S  # finished job and result (refreshed when resubmitted)
    failed_ttl_s: int = 7 * DAY_S
    work_ttl_s: int = DAY_S  # features and per-batch layer results of a running job
    redis_retry_s: float = 120.0  # how long a task waits for Redis to come back before giving up
    socket_timeout_s: float = 5.0
    preload: tuple[str, ...] = ("demo",)  # models a worker loads (and runs once) when it starts
    heartbeat_ttl_s: float = 15.0  # a worker's liveness key expires this long after its last beat
    task_time_limit_s: int = 7200  # a task running longer fails its job (checked at every progress step)
    # how extraction loads and batches models (PIDFLOW_DEVICE, _DTYPE, _DEVICE_MAP, _QUANTIZATION, _BATCH_SIZE):
    # read by pidcore.extract.loading in the worker process; checked here so a bad value fails at start
    loading: LoadOptions = LoadOptions()

    @classmethod
    def from_env(cls, env: dict | None = None) -> WorkerSettings:
        env = dict(os.environ if env is None else env)
        visibility = env_number(env, "PIDFLOW_VISIBILITY_TIMEOUT_S", cls.visibility_timeout_s)
        return cls(
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            visibility_timeout_s=visibility,
            restore_interval_s=env_number(env, "PIDFLOW_RESTORE_INTERVAL_S", min(cls.restore_interval_s, visibility)),
            stale_s=env_number(env, "PIDFLOW_STALE_S", max(cls.stale_s, 2 * visibility + 600)),
            layer_batch=env_number(env, "PIDFLOW_LAYER_BATCH", cls.layer_batch),
            result_ttl_s=env_number(env, "PIDFLOW_RESULT_TTL_S", cls.result_ttl_s),
            failed_ttl_s=env_number(env, "PIDFLOW_FAILED_TTL_S", cls.failed_ttl_s),
            work_ttl_s=env_number(env, "PIDFLOW_WORK_TTL_S", cls.work_ttl_s),
            redis_retry_s=env_number(env, "PIDFLOW_REDIS_RETRY_S", cls.redis_retry_s, float, 0),
            socket_timeout_s=env_number(env, "PIDFLOW_REDIS_TIMEOUT_S", cls.socket_timeout_s, float, 0.1),
            preload=tuple(m.strip() for m in env.get("PIDFLOW_WORKER_PRELOAD", "demo").split(",")
                          if m.strip() and m.strip() != "0"),
            heartbeat_ttl_s=env_number(env, "PIDFLOW_HEARTBEAT_TTL_S", cls.heartbeat_ttl_s, float, 0.3),
            task_time_limit_s=env_number(env, "PIDFLOW_TASK_TIME_LIMIT_S", cls.task_time_limit_s),
            loading=LoadOptions.from_env(env),
        )
