"""Service settings read from the environment (one place, so tests can build their own)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from worker.settings import DEFAULT_REDIS_URL, env_number  # one default and one parser for API and workers


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """What the API needs to know; `from_env()` reads the PIDFLOW_* variables and REDIS_URL."""

    redis_url: str = DEFAULT_REDIS_URL
    models: tuple[str, ...] = ("demo",)
    max_questions: int = 2000  # n_questions per task
    max_tasks: int = 6  # tasks per analysis (questions = n_questions x tasks)
    max_bootstrap: int = 1000  # bootstrap rounds (each costs ~1-2 ms per layer on one core)
    max_dim: int = 64  # each of dims [vision, language, target]
    max_body_bytes: int = 64 * 1024
    api_tokens: tuple[str, ...] = ()
    rate_limit_per_minute: int = 120  # writes per token in any 60 s (sliding window)
    auth_failures_per_minute: int = 10  # failed authentications per client address in any 60 s
    cors_origins: tuple[str, ...] = ()
    public_url: str = ""
    share_ttl_s: int = 30 * 24 * 3600
    result_ttl_s: int = 30 * 24 * 3600  # analysis records (the workers keep results as long)
    max_active_per_token: int = 4  # analyses one token may have queued or running at once
    max_upload_bytes: int = 256 * 1024 * 1024  # features files (POST /features, the dashboard's upload)
    upload_ttl_s: int = 30 * 24 * 3600

    @property
    def hosted(self) -> bool:
        """Hosted mode: writes need a bearer token."""
        return bool(self.api_tokens)

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        extra_models = [m for m in _split(env.get("PIDFLOW_MODELS")) if m != "demo"]
        return cls(
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            models=("demo", *extra_models),
            max_questions=env_number(env, "PIDFLOW_MAX_QUESTIONS", cls.max_questions),
            max_tasks=env_number(env, "PIDFLOW_MAX_TASKS", cls.max_tasks),
            max_bootstrap=env_number(env, "PIDFLOW_MAX_BOOTSTRAP", cls.max_bootstrap, minimum=0),
            max_dim=env_number(env, "PIDFLOW_MAX_DIM", cls.max_dim),
            max_body_bytes=env_number(env, "PIDFLOW_MAX_BODY_BYTES", cls.max_body_bytes),
            api_tokens=_split(env.get("PIDFLOW_API_TOKENS")),
            rate_limit_per_minute=env_number(env, "PIDFLOW_RATE_LIMIT", cls.rate_limit_per_minute),
            auth_failures_per_minute=env_number(env, "PIDFLOW_AUTH_FAILURES", cls.auth_failures_per_minute),
            cors_origins=_split(env.get("PIDFLOW_CORS_ORIGINS")),
            public_url=(env.get("PIDFLOW_PUBLIC_URL") or "").rstrip("/"),
            share_ttl_s=env_number(env, "PIDFLOW_SHARE_TTL_S", cls.share_ttl_s),
            result_ttl_s=env_number(env, "PIDFLOW_RESULT_TTL_S", cls.result_ttl_s),
            max_active_per_token=env_number(env, "PIDFLOW_MAX_ACTIVE", cls.max_active_per_token),
            max_upload_bytes=env_number(env, "PIDFLOW_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            upload_ttl_s=env_number(env, "PIDFLOW_UPLOAD_TTL_S", cls.upload_ttl_s),
        )
