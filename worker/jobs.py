"""The only door the app uses: submit / status / result / delete analyses (see docs/workers.md).

Redis connection failures propagate as redis.exceptions.ConnectionError / TimeoutError (the API answers
503); publishing failures as kombu's OperationalError.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache

from worker.cache import JobStore, connect, job_id_for
from worker.heartbeat import lost_tasks
from worker.settings import WorkerSettings


class JobNotReady(Exception):
    """The analysis exists but has no result (yet); `.info` holds its JobInfo."""

    def __init__(self, info: JobInfo):
        super().__init__(f"analysis {info.id} is {info.state}, no result yet")
        self.info = info


@dataclass
class JobInfo:
    """A job's state; progress 0..1, times in epoch seconds, error a readable reason when failed."""

    id: str
    state: str  # "queued" | "running" | "succeeded" | "failed"
    stage: str | None
    progress: float
    message: str | None
    error: str | None
    cached: bool
    created_at: float
    updated_at: float


@lru_cache(maxsize=8)
def _store_for(settings: WorkerSettings) -> JobStore:
    return JobStore(connect(settings), settings)


def _context() -> tuple[WorkerSettings, JobStore]:
    settings = WorkerSettings.from_env()
    return settings, _store_for(settings)


def _info(raw: dict, cached: bool = False) -> JobInfo:
    return JobInfo(id=raw["id"], state=raw["state"], stage=raw.get("stage") or None,
                   progress=float(raw.get("progress") or 0.0), message=raw.get("message") or None,
                   error=raw.get("error") or None, cached=cached, created_at=float(raw["created_at"]),
                   updated_at=float(raw["updated_at"]))


def _check_id(job_id: str) -> None:
    if not isinstance(job_id, str) or not job_id or not job_id.isalnum():
        raise KeyError(f"unknown analysis {job_id!r}")


def submit(request: dict) -> JobInfo:
    """Validate (ValueError) and queue an analysis; the same request (same model revision and code
    version) gets the same job id and, once finished, the cached result (`cached=True`). A failed job
    submitted again restarts under the same id."""
    from pidcore import __version__
    from pidcore.pipeline.analysis import AnalysisRequest
    from worker.celery_app import EXTRACT, send
    from worker.revision import model_revision

    parsed = AnalysisRequest.from_dict(request)
    revision = model_revision(parsed.model)
    job_id = job_id_for(parsed.content_hash(), revision, __version__)
    settings, store = _context()
    checked = _check_capacity(parsed, store, job_id)
    outcome, attempt = store.create(job_id, json.dumps(parsed.to_dict(), sort_keys=True), revision)
    if outcome == "new" and not checked:  # its result went between the look and the creation: check it now
        try:
            _check_capacity(parsed, store, job_id, new=True)
        except Exception:
            store.delete(job_id)  # not queued yet
            raise
    if outcome == "existing":  # its result's time to live was refreshed: so is that of its kept features
        store.redis.expire(store.keys(job_id)["probe"], settings.result_ttl_s)
    raw = store.get(job_id)
    if raw is None:  # deleted in between
        raise KeyError(f"unknown analysis {job_id!r}")
    if outcome == "new" or (raw["state"] == "queued" and raw.get("enqueued") != "1"):
        try:
            send(EXTRACT, [job_id, attempt], settings.redis_url)
        except Exception as exc:
            with contextlib.suppress(Exception):
                store.fail(job_id, attempt, f"could not queue the analysis: {exc}; submit it again")
            raise
        store.mark_enqueued(job_id, attempt)
        raw = store.get(job_id) or raw
    return _info(raw, cached=outcome == "existing" and raw["state"] == "succeeded")


def _reused(store: JobStore, job_id: str) -> bool:
    """Whether submitting `job_id` now extracts nothing: it has its result, or is queued or running (as
    JobStore.create decides; a failed job, or one whose result went, restarts)."""
    raw = store.get(job_id)
    if raw is None or raw.get("state") == "failed":
        return False
    return raw.get("state") != "succeeded" or bool(store.redis.exists(store.keys(job_id)["result"]))


def _check_capacity(parsed, store: JobStore, job_id: str, new: bool = False) -> bool:
    """Refuse a request whose features cannot be stored, before anything is queued; True when it was
    checked (a job that will extract), False for one answered from its result or already under way.
    ValueError (422) when they can never fit as configured (Redis reached only to see whether the job
    is done: a finished job is answered whatever the bound is now); FeatureStoreFull (507) when they do
    not fit next to what the feature folder holds now (PIDFLOW_FEATURE_MAX_GB)."""
    if parsed.model.startswith("features:"):  # an uploaded file: stored already, nothing to extract
        return True
    from worker.feature_store import check_capacity, check_room
    from worker.messages import redact_paths

    questions, runs = parsed.n_questions * len(parsed.tasks), 2 if parsed.knockout else 1
    try:
        needed = check_capacity(parsed.model, questions, runs)
    except ValueError:
        with contextlib.suppress(Exception):  # Redis away: refuse as the request alone says
            if not new and _reused(store, job_id):
                return False
        raise
    if not new and _reused(store, job_id):
        return False
    if needed is not None:  # the 507's message names no folder of the server
        check_room(needed, redact_paths(f"the features of {questions} questions x {runs} run(s) of {parsed.model}"))
    return True


def status(job_id: str) -> JobInfo:
    """The job's state; KeyError if unknown. A running job without any update for PIDFLOW_STALE_S
    (its workers lost, its messages gone) is marked failed here so that no client waits forever."""
    _check_id(job_id)
    settings, store = _context()
    raw = store.get(job_id)
    if raw is None:
        raise KeyError(f"unknown analysis {job_id!r}")
    idle = time.time() - float(raw["updated_at"])
    if raw["state"] == "running":
        lost = lost_tasks(store.redis, job_id)
        if lost:
            raw["message"] = (f"the worker of its {lost[0][0]} task ({lost[0][1]}) is gone (killed or out of memory); "
                              f"the task goes back to the queue within about {settings.visibility_timeout_s + 10} s")
    if raw["state"] == "running" and idle > settings.stale_s:
        store.fail(job_id, raw["attempt"], f"no progress for {idle:.0f} s: its worker was lost and the task was "
                                           f"not redelivered; submit the request again to restart")
        raw = store.get(job_id) or raw
    return _info(raw)


def result(job_id: str) -> dict:
    """The result document; KeyError if unknown, JobNotReady while queued, running or failed."""
    _check_id(job_id)
    _, store = _context()
    body = store.result(job_id)
    if body is None:
        raise JobNotReady(status(job_id))
    return json.loads(body)


def request(job_id: str) -> dict:
    """The job's canonical AnalysisRequest dict (as submitted, defaults filled); KeyError if unknown."""
    _check_id(job_id)
    raw = _context()[1].get(job_id)
    if raw is None or not raw.get("request"):
        raise KeyError(f"unknown analysis {job_id!r}")
    return json.loads(raw["request"])


def probe_features(job_id: str) -> bytes | None:
    """The baseline pooled features a finished demo-model job keeps (pidcore Features npz bytes), or None."""
    _check_id(job_id)
    return _context()[1].probe(job_id)


def delete(job_id: str) -> bool:
    """Delete the job, its result and its intermediate data; False if it did not exist. Tasks still in
    flight for it stop at their next step."""
    _check_id(job_id)
    return _context()[1].delete(job_id)


def queue_position(job_id: str) -> int | None:
    """How many extraction tasks wait ahead of this job's in the `gpu` queue (0: it is next), or None when
    its task is not waiting there (running, finished, or queued elsewhere). Reads the broker's list."""
    from worker.celery_app import EXTRACT, QUEUES

    _check_id(job_id)
    _, store = _context()
    waiting = store.redis.lrange(QUEUES[EXTRACT], 0, -1)  # kombu pushes on the left, workers pop on the right
    marker = job_id.encode()
    for index, message in enumerate(waiting):
        if marker in message:
            return len(waiting) - 1 - index
    return None
