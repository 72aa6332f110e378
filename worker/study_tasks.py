"""Celery tasks of a study (see worker/studies.py): one part per (model, task), then the report."""

from __future__ import annotations

import json
import logging
import time

from worker.celery_app import app, send
from worker.settings import WorkerSettings
from worker.studies import STUDY_FINALIZE, STUDY_PART, client, keys, parts_of

log = logging.getLogger("pidflow.worker")
PROGRESS_EVERY_S = 0.25
MAX_DELIVERIES = 4  # a part started this often (its worker lost each time) fails the study


class StudyGone(Exception):
    """Deleted, restarted or finished: the task stops quietly."""


def _alive(study_id: str, attempt: str) -> dict:
    raw = client().hgetall(keys(study_id)["study"])
    job = {k.decode(): v.decode() for k, v in raw.items()}
    if not job or job.get("attempt") != attempt or job.get("state") in ("succeeded", "failed"):
        raise StudyGone(study_id)
    return job


def _fail(study_id: str, attempt: str, message: str) -> None:
    try:
        _alive(study_id, attempt)
    except StudyGone:
        return
    client().hset(keys(study_id)["study"], mapping={"state": "failed", "error": message, "updated_at": str(time.time())})


def _part(study_id: str, attempt: str, index: int) -> None:
    from pidcore.study import StudyRequest, run_part

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    pairs = parts_of(request)
    model, task = pairs[index]
    if not redis.hexists(names["study-parts"], str(index)):
        deliveries = redis.hincrby(names["study"], f"deliveries:{index}", 1)
        if deliveries > MAX_DELIVERIES:
            raise RuntimeError(f"part {model} · {task} was started {deliveries - 1} times and its worker was lost "
                               f"each time (killed, or out of memory?)")
        last = [0.0]

        def progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY_S and fraction < 1.0:
                return
            last[0] = now
            _alive(study_id, attempt)
            redis.hset(names["study-progress"], str(index), f"{fraction:.4f}|{model} · {task}: {message}")
            redis.hset(names["study"], mapping={"state": "running", "updated_at": str(time.time()),
                                                "message": f"{model} · {task}: {message}"})
        done = run_part(request, model, task, progress=progress)
        payload = {"records": done["records"], "model": done["model"],
                   "timing": {"extract_s": done["extract_s"], "analyze_s": done["analyze_s"]}}
        _alive(study_id, attempt)
        redis.hsetnx(names["study-parts"], str(index), json.dumps(payload))
    if redis.hlen(names["study-parts"]) >= len(pairs) and redis.hsetnx(names["study"], "finalizing", attempt):
        send(STUDY_FINALIZE, [study_id, attempt], WorkerSettings.from_env().redis_url)


def _finalize(study_id: str, attempt: str) -> None:
    from pidcore.study import StudyRequest, build_report

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    stored = redis.hgetall(names["study-parts"])
    parts = [json.loads(stored[str(index).encode()]) for index in range(len(parts_of(request)))]
    records = [record for part in parts for record in part["records"]]
    models = {}
    for part, (model, _) in zip(parts, parts_of(request), strict=True):
        models[model] = part["model"]
    timing = {"extract_s": round(sum(p["timing"]["extract_s"] for p in parts), 3),
              "analyze_s": round(sum(p["timing"]["analyze_s"] for p in parts), 3),
              "wall_s": round(time.time() - float(job["created_at"]), 3)}
    document = build_report(request, records, models=models, timing=timing)
    if redis.set(names["study-report"], json.dumps(document, separators=(",", ":")), nx=True):
        redis.hset(names["study"], mapping={"state": "succeeded", "progress": "1", "message": "done",
                                            "updated_at": str(time.time())})
        redis.delete(names["study-parts"], names["study-progress"])


def _guarded(stage: str, study_id: str, attempt: str, body) -> None:
    try:
        body()
    except StudyGone:
        log.info("study %s: %s skipped (deleted, restarted or finished)", study_id, stage)
    except Exception as exc:  # noqa: BLE001 - a failure of the science becomes the study's readable error
        log.exception("study %s: %s failed", study_id, stage)
        _fail(study_id, attempt, f"{stage} failed: {type(exc).__name__}: {exc}")


@app.task(name=STUDY_PART)
def study_part(study_id: str, attempt: str, index: int) -> None:
    """Extract and analyse part `index` (one model x task) of a study; the last part queues the report."""
    _guarded("study part", study_id, attempt, lambda: _part(study_id, attempt, index))


@app.task(name=STUDY_FINALIZE)
def study_finalize(study_id: str, attempt: str) -> None:
    """Build and store the report from every part's records (once)."""
    _guarded("study report", study_id, attempt, lambda: _finalize(study_id, attempt))
