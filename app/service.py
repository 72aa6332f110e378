"""What the REST routes and the dashboard call: `AnalysisService`, a small facade over one module per
resource (app/services/): analyses, results, listings, share links, studies, features uploads, rate limits,
models and datasets, request checks, health.

Every information quantity handed out is in bits. Errors: `ValueError` for a bad request (HTTP 422),
`KeyError` for an unknown id (404), `JobNotReady` while a job runs (409), `PermissionError` for a write
the token may not do (403), `QuotaExceeded` (429), `ServiceUnavailable` when Redis or the broker cannot
be reached (503). Analysis ids, ownership and share links: app/registry.py.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from app.registry import Registry
from app.result_cache import LRU
from app.services.analyses import DEMO_KEY, TERMINAL
from app.services.base import JobNotReady, QuotaExceeded, ServiceUnavailable, StorageFull, job_to_dict
from app.services.catalogue import _local_config, _model_family, _num_decoder_layers
from app.services.health import Health
from app.services.listings import Listings
from app.services.ratelimit import AUTH_FAIL_PREFIX, RATE_PREFIX, SLIDING_WINDOW, RateLimits
from app.services.results import PID_FIELDS, Results
from app.services.sharing import Sharing
from app.services.studies import Studies
from app.services.uploads import Uploads
from app.services.validation import DEFAULT_REQUEST, KNOCKOUT_EDGES
from app.settings import Settings
from app.uploads import FeatureUploads

__all__ = ["AUTH_FAIL_PREFIX", "DEFAULT_REQUEST", "DEMO_KEY", "KNOCKOUT_EDGES", "PID_FIELDS", "RATE_PREFIX",
           "SLIDING_WINDOW", "TERMINAL", "AnalysisService", "JobNotReady", "QuotaExceeded", "ServiceUnavailable",
           "StorageFull", "_local_config", "_model_family", "_num_decoder_layers", "job_to_dict"]


class AnalysisService(Results, Listings, Sharing, Studies, Uploads, RateLimits, Health):
    """Facade over `worker.jobs` plus the service's own Redis keys (share links, owners, rate limits); each
    resource's methods live in its module of app/services/, on the state set up here."""

    def __init__(self, settings: Settings | None = None, jobs: Any = None, redis_client: Any = None):
        self.settings = settings or Settings.from_env()
        self._jobs = jobs
        self.redis = redis_client or redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=3, socket_connect_timeout=3
        )
        self._documents = LRU()
        self._claim_lock = threading.Lock()
        self.recheck_s = 1.0
        self._model_info: dict[str, dict] = {}
        self._sliding = self.redis.register_script(SLIDING_WINDOW)
        self.registry = Registry(self.redis, hosted=self.settings.hosted, ttl_s=self.settings.result_ttl_s,
                                 share_ttl_s=self.settings.share_ttl_s)
        self.uploads = FeatureUploads(self.settings, self.redis)

    @staticmethod
    def _decoder_layers(model: str) -> int | None:
        """Decoder-layer count from the model's local config, through this module's `_num_decoder_layers`
        (looked up at call time, so a test can replace it with a fixed size)."""
        return _num_decoder_layers(model)
