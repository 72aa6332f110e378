"""Celery tasks of a study (see worker/studies.py): one part per (model, task), or one shard per
PIDFLOW_EXTRACT_SHARD questions of it, then the report."""

from __future__ import annotations

import json
import logging
import time

from worker import feature_store
from worker.celery_app import app, send
from worker.settings import WorkerSettings
from worker.studies import STUDY_FINALIZE, STUDY_PART, STUDY_SHARD, client, features_owner, keys, parts_of

log = logging.getLogger("pidflow.worker")
PROGRESS_EVERY_S = 0.25
MAX_DELIVERIES = 4  # a part started this often (its worker lost each time) fails the study


class StudyGone(Exception):
    """Deleted, cancelled, restarted or finished: the task stops quietly."""


class StudyTimeLimit(Exception):
    """A study task ran longer than PIDFLOW_TASK_TIME_LIMIT_S (raised from its progress callback)."""


def _alive(study_id: str, attempt: str) -> dict:
    raw = client().hgetall(keys(study_id)["study"])
    job = {k.decode(): v.decode() for k, v in raw.items()}
    if not job or job.get("attempt") != attempt or job.get("state") in ("succeeded", "failed", "cancelled"):
        raise StudyGone(study_id)
    return job


def _fail(study_id: str, attempt: str, message: str) -> None:
    try:
        _alive(study_id, attempt)
    except StudyGone:
        return
    client().hset(keys(study_id)["study"], mapping={"state": "failed", "error": message, "updated_at": str(time.time())})


def _progress(study_id: str, attempt: str, index: int, label: str, start: float = 0.0, end: float = 1.0):
    """progress(fraction, message) of part `index`, mapped onto [start, end], at most every PROGRESS_EVERY_S
    (StudyGone once the study is cancelled, deleted or restarted); every call enforces the task's time limit
    (PIDFLOW_TASK_TIME_LIMIT_S from the callback's creation, at the task's start: StudyTimeLimit)."""
    redis, names = client(), keys(study_id)
    last = [0.0]
    limit_s = WorkerSettings.from_env().task_time_limit_s
    deadline = time.monotonic() + limit_s

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now > deadline:
            raise StudyTimeLimit(f"the study task for {label} ran longer than {limit_s} s (PIDFLOW_TASK_TIME_LIMIT_S); "
                                 f"ask for less work (questions, bootstrap, runs); the parts that finished are kept")
        if now - last[0] < PROGRESS_EVERY_S and fraction < 1.0:
            return
        last[0] = now
        _alive(study_id, attempt)
        value = start + (end - start) * min(max(fraction, 0.0), 1.0)
        redis.hset(names["study-progress"], str(index), f"{value:.4f}|{label}: {message}")
        redis.hset(names["study"], mapping={"state": "running", "updated_at": str(time.time()),
                                            "message": f"{label}: {message}"})
    return progress


def _count_delivery(study_id: str, name: str, what: str) -> None:
    deliveries = client().hincrby(keys(study_id)["study"], f"deliveries:{name}", 1)
    if deliveries > MAX_DELIVERIES:
        raise RuntimeError(f"{what} was started {deliveries - 1} times and its worker was lost "
                           f"each time (killed, or out of memory?)")


def _part(study_id: str, attempt: str, index: int) -> None:
    from pidcore.study.run import StudyRequest, run_part

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    model, task = parts_of(request)[index]
    if not redis.hexists(names["study-parts"], str(index)):
        _count_delivery(study_id, str(index), f"part {model} · {task}")
        if _queue_shards(study_id, attempt, index, request):
            return  # the shard that completes the set merges them and analyses the part
        done = run_part(request, model, task, progress=_progress(study_id, attempt, index, f"{model} · {task}"))
        _land(study_id, attempt, index, done, {"extract_s": done["extract_s"], "analyze_s": done["analyze_s"]})
    _maybe_finalize(study_id, attempt, request)


def _land(study_id: str, attempt: str, index: int, done: dict, timing: dict, shards: list | None = None) -> None:
    payload = {"records": done["records"], "model": done["model"], "timing": timing, "shards": shards}
    _alive(study_id, attempt)
    client().hsetnx(keys(study_id)["study-parts"], str(index), json.dumps(payload))


def _maybe_finalize(study_id: str, attempt: str, request) -> None:
    redis, names = client(), keys(study_id)
    if redis.hlen(names["study-parts"]) >= len(parts_of(request)) and redis.hsetnx(names["study"], "finalizing", attempt):
        send(STUDY_FINALIZE, [study_id, attempt], WorkerSettings.from_env().redis_url)


# -- a part in question shards (worker/shards.py) ---------------------------------------------------------

def _queue_shards(study_id: str, attempt: str, index: int, request) -> bool:
    """Queue one study_shard per PIDFLOW_EXTRACT_SHARD questions of part `index` that is not stored yet
    (the first plan is kept on redelivery); False when the part is extracted whole."""
    from pidcore.study.run import part_questions
    from worker import shards

    size = shards.shard_size()
    model, task = parts_of(request)[index]
    bounds = shards.shard_bounds(len(part_questions(request, task)), size) if size else []
    if len(bounds) < 2:
        return False
    redis, names = client(), keys(study_id)
    redis.hsetnx(names["study"], f"shards:{index}", json.dumps(bounds))
    bounds = json.loads(redis.hget(names["study"], f"shards:{index}"))
    stored = {field.decode() for field in redis.hkeys(names["study-features"])}
    _progress(study_id, attempt, index, f"{model} · {task}")(0.0, f"extracting {len(bounds)} shards of up to "
                                                                   f"{size} questions")
    for shard, (start, stop) in enumerate(bounds):
        if f"{index}:{shard}" not in stored:
            send(STUDY_SHARD, [study_id, attempt, index, shard, start, stop], WorkerSettings.from_env().redis_url)
    return True


def _store_shard(study_id: str, attempt: str, index: int, shard: int, start: int, stop: int, request,
                 worker: str) -> None:
    """Extract every run of questions [start, stop) of part `index` and store them with their marker, in
    one HSET (a shard is stored whole or not at all)."""
    from pidcore.study.run import extract_questions

    model, task = parts_of(request)[index]
    label = f"{model} · {task} shard {shard + 1}"
    _count_delivery(study_id, f"{index}:shard:{shard}", f"shard {shard} of part {model} · {task}")
    started = time.perf_counter()
    names = keys(study_id)
    total = len(json.loads(client().hget(names["study"], f"shards:{index}")))
    landed = sum(value is not None for value in client().hmget(names["study-features"],
                                                                [f"{index}:{number}" for number in range(total)]))
    # one shard's share of the part's extraction (30% of its bar), after the shards already stored
    say = _progress(study_id, attempt, index, label, 0.3 * landed / total, 0.3 * (landed + 1) / total)
    features = extract_questions(request, model, task, start, stop, progress=lambda f, m: say(f, f"extract: {m}"))
    owner, marker = features_owner(study_id, index), f"{index}:{shard}"
    values = {f"{marker}:{number}": feature_store.save(owner, f"s{shard}r{number}", item)
              for number, item in enumerate(features.values())}
    values[marker] = json.dumps({"runs": list(features), "questions": [start, stop], "worker": worker,
                                 "extract_s": round(time.perf_counter() - started, 3)})
    _alive(study_id, attempt)
    client().hset(keys(study_id)["study-features"], mapping=values)


def _shard(study_id: str, attempt: str, index: int, shard: int, start: int, stop: int, worker: str) -> None:
    from pidcore.study.run import StudyRequest

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    if redis.hexists(names["study-parts"], str(index)):
        return _maybe_finalize(study_id, attempt, request)
    if not redis.hexists(names["study-features"], f"{index}:{shard}"):
        _store_shard(study_id, attempt, index, shard, start, stop, request, worker)
    total = len(json.loads(redis.hget(names["study"], f"shards:{index}")))
    stored = redis.hmget(names["study-features"], [f"{index}:{number}" for number in range(total)])
    landed = sum(value is not None for value in stored)
    model, task = parts_of(request)[index]
    _progress(study_id, attempt, index, f"{model} · {task}")(0.3 * landed / total, f"{landed}/{total} shards extracted")
    if landed < total:
        return
    redis.hsetnx(names["study"], f"merging:{index}", str(shard))
    if redis.hget(names["study"], f"merging:{index}").decode() != str(shard):
        return  # another shard merges (this one's redelivery merges again if its worker is lost)
    _merge_and_analyse(study_id, attempt, index, request, [json.loads(value) for value in stored])


def _merge_and_analyse(study_id: str, attempt: str, index: int, request, shards_info: list[dict]) -> None:
    """Merge the part's shards in question order (worker/shards.merge), then finish and analyse it as an
    unsharded part (pidcore.study.run.finish_part, analyse_part) and land its records."""
    from pidcore.study.run import analyse_part, finish_part
    from worker import shards
    from worker.studies import remove_features

    redis, names = client(), keys(study_id)
    model, task = parts_of(request)[index]
    runs = shards_info[0]["runs"]
    fields = [f"{index}:{shard}:{number}" for shard in range(len(shards_info)) for number in range(len(runs))]
    values = dict(zip(fields, redis.hmget(names["study-features"], fields), strict=True))
    if any(value is None for value in values.values()):
        raise RuntimeError(f"stored shards of part {model} · {task} are missing from Redis (evicted?)")
    features = {key: shards.merge([feature_store.load(values[f"{index}:{shard}:{number}"])
                                   for shard in range(len(shards_info))])
                for number, key in enumerate(runs)}
    part = finish_part(request, model, task, features)
    done = analyse_part(request, model, task, part,
                        progress=_progress(study_id, attempt, index, f"{model} · {task}", 0.3, 1.0))
    extract_s = sum(info["extract_s"] for info in shards_info)  # worker-seconds, as an unsharded part's
    _land(study_id, attempt, index, done, {"extract_s": extract_s, "analyze_s": done["analyze_s"]}, shards_info)
    remove_features(study_id, index)
    _maybe_finalize(study_id, attempt, request)


def _finalize(study_id: str, attempt: str) -> None:
    from pidcore.study.run import StudyRequest, build_report

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
    sharded = [{"model": model, "task": task, **info} for part, (model, task) in zip(parts, parts_of(request), strict=True)
               for info in part.get("shards") or []]
    if sharded:  # which worker extracted which questions of a part, and how long it took
        timing["shards"] = [{k: v for k, v in info.items() if k != "runs"} for info in sharded]
    document = build_report(request, records, models=models, timing=timing)
    if redis.set(names["study-report"], json.dumps(document, separators=(",", ":")), nx=True):
        pipe = redis.pipeline(transaction=True)  # done and cleaned up at once: no reader sees one without the other
        pipe.hset(names["study"], mapping={"state": "succeeded", "progress": "1", "message": "done",
                                           "updated_at": str(time.time())})
        pipe.delete(names["study-parts"], names["study-progress"], names["study-features"])
        pipe.execute()
        for index in range(len(parts_of(request))):  # files a late duplicate of a shard may have left
            feature_store.remove(features_owner(study_id, index))


def _guarded(stage: str, study_id: str, attempt: str, body) -> None:
    try:
        body()
    except StudyGone:
        log.info("study %s: %s skipped (cancelled, deleted, restarted or finished)", study_id, stage)
    except StudyTimeLimit as exc:
        log.warning("study %s: %s", study_id, exc)
        _fail(study_id, attempt, str(exc))
    except Exception as exc:  # noqa: BLE001 - a failure of the science becomes the study's readable error
        log.exception("study %s: %s failed", study_id, stage)
        _fail(study_id, attempt, f"{stage} failed: {type(exc).__name__}: {exc}")


@app.task(name=STUDY_PART)
def study_part(study_id: str, attempt: str, index: int) -> None:
    """Extract and analyse part `index` (one model x task) of a study; the last part queues the report."""
    _guarded("study part", study_id, attempt, lambda: _part(study_id, attempt, index))


@app.task(name=STUDY_SHARD, bind=True)
def study_shard(self, study_id: str, attempt: str, index: int, shard: int, start: int, stop: int) -> None:
    """Extract questions [start, stop) of part `index` (every run); the last shard to land merges and analyses."""
    worker = self.request.hostname or "?"
    _guarded("study shard", study_id, attempt, lambda: _shard(study_id, attempt, index, shard, start, stop, worker))


@app.task(name=STUDY_FINALIZE)
def study_finalize(study_id: str, attempt: str) -> None:
    """Build and store the report from every part's records (once)."""
    _guarded("study report", study_id, attempt, lambda: _finalize(study_id, attempt))
