"""Per-token write limits and per-client throttling of failed authentications: sliding windows of 60 s in
Redis, counted atomically by a Lua script."""

from __future__ import annotations

import secrets
from typing import Any

from app.registry import token_key
from app.services.base import ServiceBase

RATE_PREFIX = "pidflow:rate:"
AUTH_FAIL_PREFIX = "pidflow:authfail:"
# KEYS: the window's sorted set. ARGV: limit, window (s), 1 to count this event, a unique suffix.
# Returns 0 when admitted (and counted), else whole seconds until the oldest event leaves the window.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - t))
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], t, now[1] .. now[2] .. ARGV[4])
  redis.call('EXPIRE', KEYS[1], window + 1)
end
return 0
"""


class RateLimits(ServiceBase):
    """Sliding-window limits (the facade registers SLIDING_WINDOW as `_sliding`)."""

    _sliding: Any

    def rate_limit(self, token: str) -> int | None:
        """Count one write of `token`; seconds to wait when it already made PIDFLOW_RATE_LIMIT writes in the
        last 60 s (a sliding window: never more than the limit in any 60 s), else None. API and dashboard
        writes count alike."""
        return self._window(f"{RATE_PREFIX}{token_key(token)}", self.settings.rate_limit_per_minute, count=True)

    def auth_throttled(self, client: str | None) -> int | None:
        """Seconds a client must wait after PIDFLOW_AUTH_FAILURES failed authentications in 60 s, else None."""
        return self._window(f"{AUTH_FAIL_PREFIX}{client or '-'}", self.settings.auth_failures_per_minute,
                            count=False)

    def auth_failed(self, client: str | None) -> None:
        """Record a failed authentication (missing or unknown token) of `client` (its address)."""
        self._window(f"{AUTH_FAIL_PREFIX}{client or '-'}", 10**9, count=True)

    def _window(self, key: str, limit: int, count: bool, window_s: int = 60) -> int | None:
        wait = self._call(self._sliding, [key], [limit, window_s, 1 if count else 0, secrets.token_hex(4)])
        return int(wait) if int(wait) > 0 else None
