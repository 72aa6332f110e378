"""What the REST routes and the dashboard call: analyses (through `worker.jobs`), share links,
per-question views, model and dataset listings, rate limits and health.

Every information quantity handed out is in bits. Errors: `ValueError` for a bad request (HTTP 422),
`KeyError` for an unknown id (404), `JobNotReady` while a job runs (409), `PermissionError` for a write
the token may not do (403), `QuotaExceeded` (429), `ServiceUnavailable` when Redis or the broker cannot
be reached (503). Analysis ids, ownership and share links: app/registry.py.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import io
import json
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from app.keys import HANDLE_PREFIX, OWNER_PREFIX
from app.registry import SHARE_HANDLE, Registry, token_key
from app.result_cache import LRU, CachedResult
from app.settings import Settings
from app.uploads import FeatureUploads, is_features_model
from worker.messages import FULL_REDIS, is_full_redis, redact_paths

PID_FIELDS = ("redundancy", "unique_vision", "unique_language", "synergy")
KNOCKOUT_EDGES = ("image->question", "image->last", "question->last", "last->last", "question->image")
DEFAULT_REQUEST = {  # the analysis `pidflow serve` submits at start and the dashboard opens with
    "model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "split": "test", "n_questions": 400,
    "correct_only": False, "language_pooling": "mean", "target": "logprobs", "measure": "broja",
    "dims": [8, 8, 4], "gaussianize": "auto", "estimator": "corrected", "bootstrap": 200, "knockout": None,
    "knockout_target": "baseline", "seed": 0,
}
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
DEMO_KEY = "pidflow:demo-analysis"  # the analysis the dashboard opens on when its URL names none
TERMINAL = ("succeeded", "failed")


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


class AnalysisService:
    """Facade over `worker.jobs` plus the service's own Redis keys (share links, owners, rate limits)."""

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

    # -- plumbing ---------------------------------------------------------------------------------
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

    # -- analyses ---------------------------------------------------------------------------------
    def submit(self, request: dict, token: str | None = None) -> dict:
        """Validate and submit an analysis request; returns the job status dict (`cached` when done) under
        the analysis id this token sees (hosted: random, owned by the token, or by the server itself for
        `token=None`, as for its demo analysis; open: the job id)."""
        self.validate(request)
        if token is not None:
            self._check_quota(token)
        info = job_to_dict(self._call(self.jobs.submit, dict(request)))
        info["id"] = self._call(self.registry.adopt, info["id"], token)
        if token is not None and info.get("state") not in TERMINAL:
            self._call(self.registry.mark_active, token, info["id"], True)
        return info

    def _check_quota(self, token: str) -> None:
        """QuotaExceeded when this token already has PIDFLOW_MAX_ACTIVE analyses queued or running."""
        limit = self.settings.max_active_per_token
        active = self._call(self.registry.active, token)
        if len(active) < limit:
            return
        still = 0
        for aid in active:
            try:
                state = self.status(aid).get("state")
            except KeyError:
                state = None
            if state in TERMINAL or state is None:
                self._call(self.registry.mark_active, token, aid, False)
            else:
                still += 1
        if still >= limit:
            raise QuotaExceeded(f"this token already has {still} analyses queued or running, the limit "
                                f"(PIDFLOW_MAX_ACTIVE) is {limit}: wait for one to finish or delete one")

    def status(self, analysis_id: str) -> dict:
        """The job's status under `analysis_id` (an analysis id or a `share:<token>` handle)."""
        job = self._call(self.registry.job_of, analysis_id)
        info = job_to_dict(self._call(self.jobs.status, job))
        info["id"] = analysis_id
        for key in ("error", "message"):
            if info.get(key):
                info[key] = redact_paths(info[key])
        return info

    def list_analyses(self, token: str | None, offset: int = 0, limit: int = 20, search: str | None = None) -> dict:
        """A page of this token's analyses (hosted) or of all (open), newest first: {total, offset, limit,
        items: [status dicts plus model, dataset, tasks, n_questions, measure, target, knockout]}. `search`:
        words that must all appear in an analysis's id, state, model, tasks, options or date
        (app.analysis_list); it looks through the newest SEARCH_SCAN analyses and `total` counts matches."""
        from app.analysis_list import SEARCH_SCAN, matches, search_words

        words = search_words(search)
        if not words:
            total, ids = self._call(self.registry.listing, token, offset, limit)
            items = [item for item in (self._listed(token, aid) for aid in ids) if item is not None]
            return {"total": max(total - (len(ids) - len(items)), 0), "offset": offset, "limit": limit,
                    "items": items}
        _, ids = self._call(self.registry.listing, token, 0, SEARCH_SCAN)
        found = [item for item in (self._listed(token, aid) for aid in ids) if item is not None and matches(item, words)]
        return {"total": len(found), "offset": offset, "limit": limit, "items": found[offset:offset + limit]}

    def _listed(self, token: str | None, analysis_id: str) -> dict | None:
        """One analysis of the list: its status and what it asked for; None (and dropped from the list)
        when its job expired."""
        from app.analysis_list import request_summary

        try:
            item = self.status(analysis_id)
        except KeyError:
            self._call(self.registry.unlist, token, analysis_id)
            return None
        reader = getattr(self.jobs, "request", None)
        try:
            request = self._call(reader, self._call(self.registry.job_of, analysis_id)) if reader else None
        except KeyError:
            request = None
        return {**item, **request_summary(request)}

    def list_studies(self, limit: int = 20) -> list[dict]:
        """The studies on this server, newest first (worker.studies.recent); PermissionError on a hosted
        server, where a study is read only through the handle its submitter got."""
        if self.settings.hosted:
            raise PermissionError("a hosted server does not list studies: open one by the id its submission "
                                  "returned")
        from worker import studies

        return self._call(studies.recent, limit)

    def submit_study(self, body: dict, token: str | None = None) -> dict:
        """Validate (ValueError listing every problem) and queue a study (worker.studies.submit); the status
        under the id its submitter sees: hosted, the token's random handle (the same token gets the same one
        back); open, the study id. The token's write was counted by the caller (API or dashboard)."""
        from worker import studies

        info = self._call(studies.submit, body)
        return {**info, "id": self._call(self._study_handle, info["id"], token) or info["id"]}

    def _study_handle(self, study_id: str, token: str | None) -> str | None:
        """Hosted mode: the submitting token's handle of the study (a content id could be guessed from the
        request); None in open mode, where the study id is its address."""
        if not self.settings.hosted or token is None:
            return None
        owner = OWNER_PREFIX + hashlib.sha256(f"{token}\0{study_id}".encode()).hexdigest()
        ttl = int(self.settings.result_ttl_s)
        existing = self.redis.get(owner)
        if existing:
            return existing.decode() if isinstance(existing, bytes) else existing
        handle = "s" + secrets.token_hex(16)
        self.redis.set(HANDLE_PREFIX + handle, study_id, ex=ttl)
        self.redis.set(owner, handle, ex=ttl)
        return handle

    def study_status(self, shown_id: str) -> dict:
        """A study's state and per-part progress under the id its submitter was given (hosted: a handle;
        open: the study id); KeyError when unknown."""
        from worker import studies

        shown_id = (shown_id or "").strip()
        study_id = shown_id
        if self.settings.hosted:
            found = self._call(self.redis.get, HANDLE_PREFIX + shown_id) if shown_id.isalnum() else None
            if not found:
                raise KeyError(f"unknown study {shown_id!r}")
            study_id = found.decode() if isinstance(found, bytes) else found
        return {**self._call(studies.status, study_id), "id": shown_id}

    def result(self, analysis_id: str) -> dict:
        """The result document; KeyError if unknown, JobNotReady while it runs."""
        return json.loads(self.result_json(analysis_id))

    def fresh_result(self, analysis_id: str) -> CachedResult | None:
        """The in-memory finished result, without I/O (the fast path for repeated GETs), or None when the
        caller must call `cached_result` (which re-checks the job in Redis). Its job was seen alive within
        `recheck_s`; once that is older, one caller is sent to re-check it while the others keep getting the
        copy for up to another `recheck_s`. So a delete made through another API process shows within at
        most 2 x `recheck_s`, and concurrent GETs do not all go to Redis at once."""
        cached = self._documents.get(analysis_id)
        if cached is None:
            return None
        now = time.monotonic()
        age = now - cached.seen
        if age < self.recheck_s:
            return cached
        with self._claim_lock:
            if now - cached.claimed >= self.recheck_s:  # nobody is re-checking it (or that attempt is stale)
                cached.claimed = now
                return None
        return cached if age < 2 * self.recheck_s else None

    def cached_result(self, analysis_id: str) -> CachedResult:
        """The finished result, ready to serve (JSON bytes, gzip copy, ETags); KeyError if unknown,
        JobNotReady while it runs. Its job is checked in Redis on every call."""
        try:
            status = self.status(analysis_id)  # KeyError once deleted, so the cache never outlives a job
        except KeyError:
            self._documents.drop(analysis_id)
            raise
        cached = self._documents.get(analysis_id)
        if cached is not None:
            cached.seen = time.monotonic()
            return cached
        if status.get("state") != "succeeded":
            raise JobNotReady(status)
        try:
            document = self._call(self.jobs.result, self._call(self.registry.job_of, analysis_id))
        except Exception as exc:
            if type(exc).__name__ == "JobNotReady":
                raise JobNotReady(status) from exc
            raise
        cached = CachedResult.from_document(document)
        self._documents.put(analysis_id, cached)
        return cached

    def result_json(self, analysis_id: str) -> bytes:
        """The result document as compact JSON bytes."""
        return self.cached_result(analysis_id).body

    def _document(self, analysis_id: str) -> dict:
        return self.cached_result(analysis_id).document

    def result_csv(self, analysis_id: str) -> str:
        """One row per run x layer: analysis id, model, tasks, run, layer, the four parts and the total
        (bits), CI bounds when present."""
        document = self._document(analysis_id)
        request = document.get("request") or {}
        model = (document.get("model") or {}).get("name") or request.get("model", "")
        labels = [analysis_id, model, "+".join(request.get("tasks") or [])]
        columns = ["analysis_id", "model", "tasks", "run", "layer", *PID_FIELDS, "total"]
        ci_fields = [*PID_FIELDS, "total"]
        has_ci = any(
            layer.get("ci") for run in document["runs"].values() if run for layer in run.get("layers", [])
        )
        if has_ci:
            columns += [f"{name}_{end}" for name in ci_fields for end in ("lo", "hi")]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for run_name, run in document["runs"].items():
            if not run:
                continue
            for layer in run["layers"]:
                row = [*labels, run_name, layer["layer"], *(layer[name] for name in ci_fields)]
                if has_ci:
                    ci = layer.get("ci") or {}
                    for name in ci_fields:
                        row += list(ci.get(name) or ["", ""])
                writer.writerow(row)
        return out.getvalue()

    def question(self, analysis_id: str, qid: str) -> dict:
        """One question: texts, answers, image URL and its per-layer pointwise decomposition (bits)."""
        document = self._document(analysis_id)
        questions = document.get("questions") or []
        index = next((i for i, q in enumerate(questions) if q.get("qid") == qid), None)
        if index is None:
            raise KeyError(f"question {qid!r} is not part of analysis {analysis_id}")
        entry = questions[index]
        view = {key: entry.get(key) for key in ("qid", "task", "question", "answer", "image_id")}
        view["image_url"] = f"/api/v1/images/{entry.get('image_id')}" if entry.get("image_id") else None
        pointwise = document.get("pointwise") or {}
        for run in ("baseline", "knockout"):
            outcome = entry.get(run)
            terms = pointwise.get(run)
            if outcome is None and terms is None:
                view[run] = None
                continue
            layers = []
            if terms is not None:
                for layer, values in enumerate(terms[index]):
                    parts = dict(zip(PID_FIELDS, values, strict=True))
                    layers.append({"layer": layer, **parts, "total": sum(values)})
            view[run] = {**(outcome or {}), "layers": layers}
        return view

    def attention(self, analysis_id: str, qid: str) -> dict:
        """Attention of one question to its image patches per decoder layer, baseline and knockout (app.attention;
        demo model only)."""
        from app.attention import question_attention

        return question_attention(self._document(analysis_id), analysis_id, qid)

    def ask(self, image_bytes: bytes, question: str) -> dict:
        """The demo model's answer to an uploaded image and question, with its attention maps."""
        from app.attention import own_question

        return own_question(image_bytes, question)

    def own_terms(self, analysis_id: str, image_bytes: bytes, question: str) -> dict:
        """The per-layer pointwise terms (bits) of an uploaded image and question placed among the questions
        of a finished demo-model analysis (app/own_terms.py); KeyError when the analysis kept no features."""
        from app.own_terms import own_terms

        document = self._document(analysis_id)
        reader = getattr(self.jobs, "probe_features", None)
        kept = self._call(reader, self._call(self.registry.job_of, analysis_id)) if reader else None
        if kept is None:
            raise KeyError(f"analysis {analysis_id} kept no features to place a new question among (only "
                           f"demo-model analyses finished by this version do, for as long as their result)")
        return own_terms(document, kept, image_bytes, question)

    def delete(self, analysis_id: str, token: str | None = None) -> bool:
        """Delete an analysis (hosted: only its owner may) with its share links; its job, result and running
        tasks go too once no other analysis points at the same job."""
        self._call(self.registry.owner_check, analysis_id, token, "delete")
        self.status(analysis_id)  # KeyError (404) when unknown
        self._documents.drop(analysis_id)
        job, last = self._call(self.registry.forget, analysis_id)
        if last:
            self._call(self.jobs.delete, job)
        return True

    # -- the first page -----------------------------------------------------------------------------
    def set_demo_analysis(self, analysis_id: str) -> None:
        """Name the analysis the dashboard opens on (`pidflow serve` sets its demo analysis)."""
        self._call(self.redis.set, DEMO_KEY, analysis_id)

    def demo_analysis(self) -> str | None:
        """The id of the analysis the dashboard opens on, or None when none is set or it was deleted."""
        value = self._call(self.redis.get, DEMO_KEY)
        if value is None:
            return None
        analysis_id = value.decode() if isinstance(value, bytes) else str(value)
        try:
            self.status(analysis_id)
        except KeyError:
            return None
        return analysis_id

    # -- features files (app/uploads.py) ----------------------------------------------------------
    def upload_features(self, data: bytes, filename: str | None = None, token: str | None = None) -> dict:
        """Check and store a features file; its summary and the request that analyses it."""
        return self._call(self.uploads.upload, data, filename, token)

    def delete_features(self, features_id: str, token: str | None = None) -> bool:
        """Remove an uploaded features file; hosted mode: only a token that uploaded it (PermissionError)."""
        return self._call(self.uploads.delete, features_id, token)

    def features_info(self, features_id: str) -> dict:
        return self._call(self.uploads.info, features_id)

    def uploaded_image(self, image_id: str) -> bytes | None:
        """PNG of a question image from a features file, None when `image_id` is a dataset image."""
        return self._call(self.uploads.image, image_id)

    # -- share links ------------------------------------------------------------------------------
    def create_share(self, analysis_id: str, token: str | None = None) -> dict:
        """A read-only share link of an existing analysis (hosted: only its owner may share):
        {share_token, created_at, expires_at} (epoch seconds)."""
        self._call(self.registry.owner_check, analysis_id, token, "share")
        self.status(analysis_id)
        return self._call(self.registry.share, analysis_id)

    def list_shares(self, analysis_id: str, token: str | None = None) -> list[dict]:
        self._call(self.registry.owner_check, analysis_id, token, "list the share links of")
        return self._call(self.registry.shares, analysis_id)

    def revoke_share(self, analysis_id: str, share_token: str, token: str | None = None) -> None:
        """Revoke a share link at once; KeyError if it is not a live link of this analysis."""
        self._call(self.registry.owner_check, analysis_id, token, "revoke the share links of")
        if not self._call(self.registry.revoke, analysis_id, share_token):
            raise KeyError(f"no live share link {share_token!r} of analysis {analysis_id}")
        self._documents.drop(SHARE_HANDLE + share_token)

    def resolve_share(self, share_token: str) -> str:
        """The read-only handle `share:<token>` to pass to status/result/question; KeyError if unknown,
        expired or revoked. It names no analysis id."""
        self._call(self.registry.shared_analysis, share_token)
        return SHARE_HANDLE + share_token

    # -- rate limits ------------------------------------------------------------------------------
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

    # -- catalogue --------------------------------------------------------------------------------
    def models(self) -> list[dict]:
        """Configured models: `demo` always, more from PIDFLOW_MODELS (num_layers when known)."""
        return [self._describe_model(name) for name in self.settings.models]

    def _describe_model(self, name: str) -> dict:
        if name in self._model_info:
            return dict(self._model_info[name])
        if is_features_model(name):
            info = {"name": name, "num_layers": self._call(self.uploads.num_layers, name)}
        else:
            info = {"name": name, **_model_family(name), "num_layers": _num_decoder_layers(name)}
        if info["num_layers"] is not None:  # unknown sizes are looked up again (weights may arrive later)
            self._model_info[name] = info
        return dict(info)

    def datasets(self) -> list[dict]:
        """Datasets with their tasks, as pidcore.data lists them."""
        try:
            data = importlib.import_module("pidcore.data")
            listing = data.list_datasets()
        except (ImportError, AttributeError):
            return []
        if isinstance(listing, dict):
            listing = [{"name": name, **(info if isinstance(info, dict) else {"tasks": info})}
                       for name, info in listing.items()]
        return [_plain(entry) for entry in listing]

    def image_path(self, image_id: str) -> Path:
        """Path of a dataset image (PNG); KeyError if unknown."""
        if "/" in image_id or image_id.startswith("."):
            raise KeyError(f"unknown image {image_id!r}")
        try:
            data = importlib.import_module("pidcore.data")
            path = data.find_image(image_id)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"unknown image {image_id!r}") from exc
        except (ValueError, FileNotFoundError) as exc:
            raise KeyError(str(exc)) from exc
        if path is None or not Path(path).is_file():
            raise KeyError(f"unknown image {image_id!r}")
        return Path(path)

    # -- validation -------------------------------------------------------------------------------
    def validate(self, request: Any) -> None:
        """Service-level checks (configured model, bounds, known dataset/task, layer window), then
        pidcore's own AnalysisRequest validation. Raises ValueError naming the problem."""
        if not isinstance(request, dict):
            raise ValueError("the request body must be a JSON object")
        model = request.get("model", "demo")
        features = is_features_model(model)
        if not features and model not in self.settings.models:
            raise ValueError(f"unknown model {model!r}; configured models: {', '.join(self.settings.models)}")
        self.check_bounds(request)
        if self.settings.hosted and not features and model != "demo" and self._describe_model(model)["num_layers"] is None:
            raise ValueError(f"model {model!r} is not in this server's model cache, and a hosted server does not "
                             f"download inside a task; an operator fetches it first: pidflow fetch-model {model}")
        if features:
            self._call(self.uploads.validate, request)
        else:
            self._validate_dataset(request)
            self._precheck(request)
        described = self._describe_model(model)
        self._validate_knockout(request.get("knockout"), described.get("num_layers"), described.get("knockout_edges"),
                                described.get("family"))
        try:
            analysis = importlib.import_module("pidcore.analysis")
        except ImportError:
            return
        analysis.AnalysisRequest.from_dict(dict(request))

    @staticmethod
    def _precheck(request: dict) -> None:
        """Refuse (app.precheck.Refused, a ValueError naming its field) what cannot give a result."""
        try:
            from app.precheck import check
        except ImportError:  # the API without pidcore: the worker checks
            return
        check({**DEFAULT_REQUEST, **request})

    def queue_position(self, analysis_id: str) -> int | None:
        """Extraction tasks waiting ahead of this analysis's (0: next), None when it is not waiting."""
        finder = getattr(self.jobs, "queue_position", None)
        return self._call(finder, analysis_id) if finder else None

    def estimate(self, request: dict) -> dict:
        """Expected cost of a request (pidcore.costs.estimate: seconds per stage, None when unknown; the
        expected bias of the total in bits)."""
        from pidcore import costs

        full = {**DEFAULT_REQUEST, **request}
        return costs.estimate(full, self._describe_model(full.get("model", "demo")).get("num_layers"))

    def limits(self) -> dict:
        """The server's bounds on cost parameters: request field -> (largest value, setting)."""
        cfg = self.settings
        return {"n_questions": (cfg.max_questions, "PIDFLOW_MAX_QUESTIONS"),
                "tasks": (cfg.max_tasks, "PIDFLOW_MAX_TASKS"),
                "bootstrap": (cfg.max_bootstrap, "PIDFLOW_MAX_BOOTSTRAP"),
                "dims": (cfg.max_dim, "PIDFLOW_MAX_DIM")}

    def deepest_layer(self) -> int | None:
        """The deepest decoder-layer index of any configured model whose size is known here (None if none)."""
        sizes = [info["num_layers"] for info in self.models() if info.get("num_layers")]
        return max(sizes) - 1 if sizes else None

    def check_bounds(self, request: dict) -> None:
        """ValueError naming the field, its bound and the setting when a cost parameter is out of bounds."""
        limits = self.limits()

        def integer(name: str, value: Any, minimum: int) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            bound, setting = limits.get(name, (None, None))
            if bound is not None and value > bound:
                raise ValueError(f"{name}={value} exceeds this server's limit of {bound} ({setting})")
            return value

        integer("n_questions", request.get("n_questions", DEFAULT_REQUEST["n_questions"]), 1)
        integer("bootstrap", request.get("bootstrap", DEFAULT_REQUEST["bootstrap"]), 0)
        dims = request.get("dims", DEFAULT_REQUEST["dims"])
        if (not isinstance(dims, list | tuple) or len(dims) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)):
            raise ValueError("dims must be three positive integers [vision, language, target]")
        bound, setting = limits["dims"]
        if max(dims) > bound:
            raise ValueError(f"dims {list(dims)}: each must be at most {bound} on this server ({setting})")
        tasks = request.get("tasks", DEFAULT_REQUEST["tasks"])
        bound, setting = limits["tasks"]
        if isinstance(tasks, list | tuple) and len(tasks) > bound:
            raise ValueError(f"{len(tasks)} tasks exceed this server's limit of {bound} per analysis ({setting})")

    def _validate_dataset(self, request: dict) -> None:
        listing = {entry.get("name"): entry for entry in self.datasets()}
        if not listing:
            return
        dataset = request.get("dataset", "easy-vqa")
        if dataset not in listing:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(listing))}")
        tasks = request.get("tasks", ["color"])
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise ValueError("tasks must be a non-empty list of task names")
        splits = listing[dataset].get("splits")
        split = request.get("split", "test")
        if splits and split not in splits:
            raise ValueError(f"unknown split {split!r} for {dataset}; known: {', '.join(splits)}")
        known = [t if isinstance(t, str) else t.get("name") for t in listing[dataset].get("tasks", [])]
        unknown = [t for t in tasks if known and t not in known]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown} for {dataset}; known: {', '.join(known)}")

    @staticmethod
    def _validate_knockout(knockout: Any, num_layers: int | None, supported: list | None = None,
                           family: str | None = None) -> None:
        if knockout is None:
            return
        if not isinstance(knockout, dict):
            raise ValueError('knockout must be null or {"edges": [...], "layers": [first, last]}')
        edges = knockout.get("edges")
        if not isinstance(edges, list) or not edges or any(e not in KNOCKOUT_EDGES for e in edges):
            raise ValueError(f"knockout.edges must be a non-empty list from {', '.join(KNOCKOUT_EDGES)}")
        if supported and any(e not in supported for e in edges):
            raise ValueError(f"{family or 'this model'} supports knockout edges {', '.join(supported)}; "
                             f"not {', '.join(e for e in edges if e not in supported)}")
        layers = knockout.get("layers")
        if (not isinstance(layers, list | tuple) or len(layers) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)):
            raise ValueError("knockout.layers must be [first, last] decoder-layer indices")
        first, last = layers
        if first < 0 or last < first:
            raise ValueError(f"knockout.layers [{first}, {last}] is not a window (0 <= first <= last)")
        if num_layers is not None and last >= num_layers:
            raise ValueError(
                f"knockout.layers [{first}, {last}] is outside the model: decoder layers are 0..{num_layers - 1}"
            )

    # -- health -----------------------------------------------------------------------------------
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

def _plain(entry: Any) -> dict:
    if dataclasses.is_dataclass(entry):
        return dataclasses.asdict(entry)
    return dict(entry)


def _model_family(model: str) -> dict:
    """Family, knockout edges and special layers from the model's local config (pidcore's registry);
    {} when the config cannot be read here."""
    config = _local_config(model)
    if config is None:
        return {}
    from pidcore.extract.families import describe_config

    facts = describe_config(config)
    facts.pop("num_layers", None)
    return facts


def _local_config(model: str) -> dict | None:
    """The model's config.json as a dict, from disk or the Hugging Face cache (no download); None if absent."""
    try:
        if model == "demo":
            demo = importlib.import_module("pidcore.demo")
            return json.loads((Path(demo.demo_model_path()) / "config.json").read_text())
        folder = Path(model).expanduser()
        if folder.is_dir():
            return json.loads((folder / "config.json").read_text())
        # the cache file itself: transformers' local_files_only lookups still call the hub (user-agent
        # registry), which hangs against a hub that accepts connections and never answers
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None
    except Exception:  # noqa: BLE001 - unknown here; the worker validates against the real model
        return None


def _num_decoder_layers(model: str) -> int | None:
    """Decoder-layer count from a local config (no download); None when it cannot be read."""
    config = _local_config(model)
    if config is None:
        return None
    text = config.get("text_config") or config
    value = text.get("num_hidden_layers")
    return int(value) if value is not None else None
