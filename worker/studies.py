"""Studies on the Celery workers: submit / status / report (the door the API uses) and the Redis keys.

A study fans out into one `pidflow.study_part` task per (model, task) on the gpu queue, which only extracts
all the part's runs together and stores them (worker/feature_store.py); with PIDFLOW_EXTRACT_SHARD
(worker/shards.py) a part whose questions exceed one shard queues one `pidflow.study_shard` (gpu) per shard
instead. Then on the cpu queue: `pidflow.study_prepare` (merge the shards, plan the part once: units of
(recipe, run, layer batch)), one `pidflow.study_analyze` per unit (the last to land assembles the part's
records) and `pidflow.study_finalize` (the report, once every part has landed). Tasks are acknowledged late,
so a killed worker's task is redelivered; a unit, a part and the report each land once.

Keys (`<id>` = study id): `pidflow:study:<id>` (hash: state, progress, message, error, request, total,
attempt, created_at, updated_at, finalizing, shards:<i>, merging:<i>, plan:<i>), `pidflow:study-parts:<id>`
(hash "<i>" -> JSON records of part i), `pidflow:study-layers:<id>:<i>` (hash "<unit>" -> landed entries), `pidflow:study-progress:<id>` (hash "<i>" -> "fraction|message"),
`pidflow:study-features:<id>` (hash "<i>:<shard>" -> JSON of a stored shard, "<i>:<shard>:<run number>"
-> its features; "<i>:part" -> the extracted part's marker, "<i>:run:<run number>" -> its runs), `pidflow:study-report:<id>`.

States: queued, running, succeeded, failed, cancelled (`cancel`: parts stop at their next progress step,
finished parts stay; submitting it again resumes). Every part, shard and report task runs under the
workers' PIDFLOW_TASK_TIME_LIMIT_S, checked at every progress step (worker/study_tasks.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache

from worker.cache import connect
from worker.settings import WorkerSettings

PREFIX = "pidflow:"
STUDY_PART, STUDY_FINALIZE, STUDY_SHARD = "pidflow.study_part", "pidflow.study_finalize", "pidflow.study_shard"
STUDY_PREPARE, STUDY_ANALYZE = "pidflow.study_prepare", "pidflow.study_analyze"
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
RESTARTABLE = ("failed", "cancelled")  # submitting such a study again starts a new attempt


def keys(study_id: str) -> dict[str, str]:
    return {name: f"{PREFIX}{name}:{study_id}" for name in ("study", "study-parts", "study-progress", "study-features",
                                                              "study-report")}


def layers_key(study_id: str, index: int) -> str:
    """Hash of part `index`'s landed analysis units: "<unit>" -> JSON {entries, seconds}."""
    return f"{PREFIX}study-layers:{study_id}:{index}"


@lru_cache(maxsize=8)
def _client_for(settings: WorkerSettings):
    return connect(settings)


def client():
    return _client_for(WorkerSettings.from_env())


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _check_id(study_id: str) -> None:
    if not isinstance(study_id, str) or not study_id or not study_id.isalnum():
        raise KeyError(f"unknown study {study_id!r}")


def parts_of(request) -> list[tuple[str, str]]:
    return [(model, task) for model in request.models for task in request.tasks]


def submit(body: dict) -> dict:
    """Validate (ValueError) and queue a study; the same request, model revisions and code version get the
    same id (a finished one is served as is, a failed one restarts)."""
    from pidcore import __version__
    from pidcore.study.run import StudyRequest
    from worker.celery_app import send
    from worker.revision import model_revision

    body, source = split_source(body)
    request = StudyRequest.from_dict(body)
    if source is None:
        revisions = [model_revision(model) for model in request.models]
    else:  # bring your own activations: the parts are named by their files, not by a model's revision
        revisions = [source_fingerprint(source, request)]
    study_id = hashlib.sha256("\n".join([request.content_hash(), *revisions, __version__]).encode()).hexdigest()[:32]
    redis, names = client(), keys(study_id)
    state = _text(redis.hget(names["study"], "state"))
    if state is not None and state not in RESTARTABLE:
        return status(study_id)
    attempt = str(int(_text(redis.hget(names["study"], "attempt")) or 0) + 1)
    now = str(time.time())
    # a cancelled or failed study resumes: the parts that finished before stay and are not run again, and of
    # the others every stored extraction (whole, or question shards), plan and landed analysis is reused
    kept = {_text(k) for k in redis.hkeys(names["study-parts"])} if state in RESTARTABLE else set()
    stored, carried, resumed = {}, {}, []
    for index, _ in enumerate(parts_of(request)):
        fields, plan_fields = _reusable(redis, names, index) if state in RESTARTABLE and str(index) not in kept \
            else ({}, {})
        if fields:
            stored.update(fields)
            carried.update(plan_fields)
            resumed.append(index)
        else:  # what an earlier attempt left of it on the volume
            remove_features(study_id, index)
    pipe = redis.pipeline()
    pipe.delete(*([] if kept else [names["study-parts"]]), names["study-progress"], names["study-features"],
                names["study-report"], names["study"],
                *[layers_key(study_id, index) for index, _ in enumerate(parts_of(request)) if index not in resumed])
    pipe.hset(names["study"], mapping={"id": study_id, "state": "queued", "progress": "0", "message": "queued",
                                       "error": "", "request": json.dumps(request.to_dict()), "attempt": attempt,
                                       "total": str(len(parts_of(request))), "created_at": now, "updated_at": now,
                                       **({"source": json.dumps(source)} if source else {}), **carried})
    if stored:
        pipe.hset(names["study-features"], mapping=stored)
    pipe.execute()
    settings = WorkerSettings.from_env()
    missing = [index for index, _ in enumerate(parts_of(request)) if str(index) not in kept]
    for index in missing:  # features files need no GPU: their parts start with the plan, on the cpu queue
        send(STUDY_PART if source is None else STUDY_PREPARE, [study_id, attempt, index], settings.redis_url)
    if not missing and redis.hsetnx(names["study"], "finalizing", attempt):
        send(STUDY_FINALIZE, [study_id, attempt], settings.redis_url)
    return status(study_id)


SOURCE_FIELDS = ("features_dir", "features")


def split_source(body: dict) -> tuple[dict, dict | None]:
    """(the StudyRequest's fields, the study's features source or None) of a study body. Bring your own
    activations (docs/study.md): `features_dir`, a folder on the server (and every worker) holding
    <model>/<task>/*.npz|.safetensors|.pt as `pidflow study --features-dir`, -> {"kind": "dir", "path"}; or
    `features`, {model: {task: [sha256 of an uploaded features file, ...]}} -> {"kind": "uploads", "files"}.
    ValueError (naming the field) for a malformed source; whether the files exist is checked by the gate
    (app/services/validation.py) and by the workers."""
    if not isinstance(body, dict):
        return body, None
    given = [name for name in SOURCE_FIELDS if body.get(name) is not None]
    rest = {key: value for key, value in body.items() if key not in SOURCE_FIELDS}
    if not given:
        return rest, None
    if len(given) > 1:
        raise SourceError("features_dir", "give either features_dir (a server folder) or features (uploaded files), "
                                          "not both")
    if given[0] == "features_dir":
        folder = body["features_dir"]
        if not isinstance(folder, str) or not folder.strip():
            raise SourceError("features_dir", f"features_dir must be a folder path, got {folder!r}")
        from pathlib import Path

        return rest, {"kind": "dir", "path": str(Path(folder).expanduser().resolve())}
    files = body["features"]
    ok = isinstance(files, dict) and files and all(
        isinstance(model, str) and isinstance(tasks, dict) and tasks and all(
            isinstance(task, str) and isinstance(ids, list) and ids and all(isinstance(i, str) and i.isalnum()
                                                                            for i in ids)
            for task, ids in tasks.items()) for model, tasks in files.items())
    if not ok:
        raise SourceError("features", "features must be {model: {task: [id of an uploaded features file, ...]}} "
                                      "(ids as POST /api/v1/features answered)")
    return rest, {"kind": "uploads", "files": {model: {task: list(ids) for task, ids in tasks.items()}
                                               for model, tasks in files.items()}}


class SourceError(ValueError):
    """A malformed features source of a study body; `field` names it (HTTP 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def source_files(source: dict, model: str, task: str) -> list:
    """The files of part (model, task) of a study's features source, in the order the part reads them: paths
    (a folder's, sorted by name: pidcore.study.run.features_part's order) or upload sha256s."""
    if source["kind"] == "dir":
        from pathlib import Path

        from pidcore.study.run import FEATURE_SUFFIXES

        where = Path(source["path"]) / model / task
        return sorted(path for path in where.glob("*") if path.suffix.lower() in FEATURE_SUFFIXES) \
            if where.is_dir() else []
    return list(source["files"].get(model, {}).get(task, []))


def source_fingerprint(source: dict, request) -> str:
    """What names a study's features: per part its files' names, sizes and modification times (a folder), or
    their sha256s (uploads); a changed file makes a new study."""
    parts = []
    for model, task in parts_of(request):
        files = source_files(source, model, task)
        if source["kind"] == "dir":
            files = [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files]
        parts.append(f"{model}/{task}:" + ",".join(files))
    text = json.dumps({"kind": source["kind"], "path": source.get("path"), "parts": parts})
    return "features-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _reusable(redis, names, index: int) -> tuple[dict, dict]:
    """What a re-run of a failed or cancelled study can reuse of part `index`: (its study-features fields:
    the extracted part's marker and runs, or the question shards stored whole, only where their files are
    still there; the study-hash fields that go with them: its plan, its shard bounds). Its landed analyses
    (pidflow:study-layers:<id>:<i>) are kept with its plan."""
    from worker import feature_store

    prefix = f"{index}:"
    fields = {_text(k): v for k, v in redis.hgetall(names["study-features"]).items() if _text(k).startswith(prefix)}
    wanted = [f"plan:{index}", f"shards:{index}"]
    job = {name: _text(value) for name, value in zip(wanted, redis.hmget(names["study"], *wanted), strict=True)
           if value is not None}
    marker = fields.get(f"{index}:part")
    if marker is not None:
        runs = {f"{index}:run:{number}": fields.get(f"{index}:run:{number}")
                for number in range(len(json.loads(marker)["runs"]))}
        if all(value is not None and feature_store.present(value) for value in runs.values()):
            return {f"{index}:part": marker, **runs}, {k: v for k, v in job.items() if k.startswith("plan:")}
        return {}, {}
    if f"shards:{index}" not in job:
        return {}, {}
    keep = {}
    for shard in range(len(json.loads(job[f"shards:{index}"]))):
        head = fields.get(f"{index}:{shard}")
        if head is None:
            continue
        runs = {f"{index}:{shard}:{number}": fields.get(f"{index}:{shard}:{number}")
                for number in range(len(json.loads(head)["runs"]))}
        if all(value is not None and feature_store.present(value) for value in runs.values()):
            keep.update({f"{index}:{shard}": head, **runs})
    return (keep, {f"shards:{index}": job[f"shards:{index}"]}) if keep else ({}, {})


def cancel(study_id: str) -> dict:
    """Stop a queued or running study: its state becomes "cancelled" at once; a queued part or shard that a
    worker takes up then does nothing, and a running one stops at its next progress step (within about a
    second: every progress write checks the state). Finished parts stay (status shows them done), and so do
    the other parts' stored extractions, plans and landed analyses: submitting the same study again resumes
    it with only what is missing (no extraction done twice). A finished or failed study is
    left as it is. KeyError if unknown."""
    _check_id(study_id)
    redis, names = client(), keys(study_id)
    state = _text(redis.hget(names["study"], "state"))
    if state is None:
        raise KeyError(f"unknown study {study_id!r}")
    if state in ("queued", "running"):
        redis.hset(names["study"], mapping={"state": "cancelled", "message": "cancelled", "error": "",
                                            "updated_at": str(time.time())})
        redis.delete(names["study-progress"])
        # the parts' stored extractions (whole runs, question shards), plans and landed analyses stay, so that
        # submitting the study again reuses them (worker.feature_store keeps a cancelled study's folders for
        # PIDFLOW_STUDY_RESUME_S, as a failed one's); a task still running stops at its next progress step
    return status(study_id)


def _request_of(redis, names):
    from pidcore.study.run import StudyRequest

    return StudyRequest.from_dict(json.loads(_text(redis.hget(names["study"], "request"))))


def features_owner(study_id: str, index: int) -> str:
    """The feature_store id of part `index`'s shards (alphanumeric: a folder name)."""
    return f"{study_id}p{index}"


def remove_features(study_id: str, index: int) -> None:
    """Drop part `index`'s stored shards (Redis fields and files)."""
    from worker import feature_store

    redis, name = client(), keys(study_id)["study-features"]
    fields = [f for f in redis.hkeys(name) if _text(f).split(":", 1)[0] == str(index)]
    if fields:
        redis.hdel(name, *fields)
    feature_store.remove(features_owner(study_id, index))


def status(study_id: str) -> dict:
    """State, overall progress (0..1) and each part's progress; KeyError if unknown."""
    _check_id(study_id)
    redis, names = client(), keys(study_id)
    raw = {_text(k): _text(v) for k, v in redis.hgetall(names["study"]).items()}
    if not raw:
        raise KeyError(f"unknown study {study_id!r}")
    from pidcore.study.run import StudyRequest

    request = StudyRequest.from_dict(json.loads(raw["request"]))
    landed = {_text(k) for k in redis.hkeys(names["study-parts"])}
    running = {_text(k): _text(v) for k, v in redis.hgetall(names["study-progress"]).items()}
    pairs = parts_of(request)
    pipe = redis.pipeline(transaction=False)
    for index in range(len(pairs)):
        pipe.hexists(names["study-features"], f"{index}:part")
        pipe.hlen(layers_key(study_id, index))
    counts = pipe.execute()
    parts = []
    stages = {"extraction": {"done": 0, "total": len(pairs)}, "analysis": {"done": 0, "total": 0, "planned_parts": 0}}
    for index, (model, task) in enumerate(pairs):
        done = str(index) in landed or raw["state"] == "succeeded"  # a finished study's parts are dropped
        fraction, message = (1.0, "done") if done else (0.0, "waiting for a worker")
        if raw["state"] == "cancelled" and not done:
            message = "cancelled"
        if str(index) in running and not done:
            value, _, message = running[str(index)].partition("|")
            fraction = float(value)
        plan = raw.get(f"plan:{index}")
        units = len(json.loads(plan)["units"]) if plan else None
        analysed = units if done and units is not None else counts[2 * index + 1]
        extracted = done or plan is not None or bool(counts[2 * index])
        stage = "done" if done else "analysis" if plan else "planning" if extracted else "extraction"
        if not done and raw.get(f"failed:{index}"):  # this part failed (the others went on)
            stage, message = "failed", raw[f"failed:{index}"]
        stages["extraction"]["done"] += extracted
        if units is not None:
            stages["analysis"]["planned_parts"] += 1
            stages["analysis"]["total"] += units
            stages["analysis"]["done"] += analysed
        parts.append({"model": model, "task": task, "progress": round(fraction, 4), "message": message,
                      "stage": stage, "analyses": None if units is None else [analysed, units]})
    overall = 1.0 if raw["state"] == "succeeded" else 0.99 * sum(p["progress"] for p in parts) / max(len(parts), 1)
    return {"id": study_id, "state": raw["state"], "progress": round(overall, 4), "message": raw.get("message"),
            "error": raw.get("error") or None, "parts": parts, "stages": stages, "created_at": float(raw["created_at"]),
            "updated_at": float(raw["updated_at"])}


def recent(limit: int = 20) -> list[dict]:
    """The studies on this Redis, newest first (at most `limit`): {id, state, progress, models, tasks,
    created_at}. For an open server's listing (a hosted one reads studies only through handles)."""
    redis, rows = client(), []
    for key in redis.scan_iter(match=f"{PREFIX}study:*", count=500):
        names = ("id", "state", "progress", "request", "created_at")
        raw = dict(zip(names, (_text(value) for value in redis.hmget(key, *names)), strict=True))
        if not raw.get("id") or not raw.get("request"):
            continue
        request = json.loads(raw["request"])
        rows.append({"id": raw["id"], "state": raw["state"], "progress": float(raw["progress"] or 0),
                     "models": request.get("models"), "tasks": request.get("tasks"),
                     "created_at": float(raw["created_at"] or 0)})
    rows.sort(key=lambda row: row["created_at"], reverse=True)
    return rows[:limit]


def report(study_id: str) -> dict:
    """The report; KeyError if unknown, LookupError (with the status) while it is not ready."""
    body = client().get(keys(study_id)["study-report"]) if study_id.isalnum() else None
    if body is None:
        info = status(study_id)
        raise StudyNotReady(info)
    return json.loads(body)


class StudyNotReady(LookupError):
    def __init__(self, info: dict):
        detail = f": {info['error']}" if info.get("error") else ""
        super().__init__(f"study {info['id']} is {info['state']}{detail}, no report yet")
        self.info = info
