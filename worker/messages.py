"""Messages handed to API clients: no absolute server paths (they tell an outsider how the server is laid
out, and mean nothing to them)."""

from __future__ import annotations

import re

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")
FULL_REDIS = ("the server's Redis is full (maxmemory, noeviction policy): it accepts no new work until an "
              "operator frees memory or raises maxmemory")


def is_full_redis(exc: BaseException) -> bool:
    """True for Redis's refusal of a write at maxmemory: an OutOfMemoryError, or (Redis 7) the same
    refusal inside a Lua script, which redis-py reports as a plain ResponseError."""
    import redis

    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc))


def redact_paths(text: str) -> str:
    """`text` with every absolute path /a/b/c.ext replaced by `.../c.ext`."""
    return _ABSOLUTE_PATH.sub(lambda match: f".../{match.group(1)}", str(text))
