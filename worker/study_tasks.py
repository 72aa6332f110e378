"""Celery tasks of a study (see worker/studies.py): one part per (model, task), or one shard per
PIDFLOW_EXTRACT_SHARD questions of it, then the report."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from worker import feature_store
from worker.celery_app import app, send
from worker.messages import redact_paths
from worker.settings import WorkerSettings
from worker.studies import (
    STUDY_ANALYZE,
    STUDY_FINALIZE,
    STUDY_PART,
    STUDY_PREPARE,
    STUDY_SHARD,
    _text,
    client,
    features_owner,
    keys,
    layers_key,
    parts_of,
)

log = logging.getLogger("pidflow.worker")
PROGRESS_EVERY_S = 0.25
MAX_DELIVERIES = 4  # a part started this often (its worker lost each time) fails the study


def _extract_end(request) -> float:
    """A part's bar: extraction up to here, then its analyses (measured stage costs: pidcore.study.progress)."""
    from pidcore.study.progress import extract_share

    return extract_share(request)


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


def _label(request, index: int) -> str:
    model, task = parts_of(request)[index]
    return f"{model} · {task}"


def _part(study_id: str, attempt: str, index: int, worker: str = "?") -> None:
    """GPU: extract every run of part `index` (or queue its question shards), store the runs, queue the
    part's plan on the cpu queue and return: the analyses run on CPU workers."""
    from pidcore.study.run import StudyRequest

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    if redis.hexists(names["study-parts"], str(index)):
        return _maybe_finalize(study_id, attempt, request)
    if not redis.hexists(names["study-features"], f"{index}:part"):
        _count_delivery(study_id, str(index), f"part {_label(request, index)}")
        if _queue_shards(study_id, attempt, index, request):
            return  # the shard that completes the set queues the plan (which merges them)
        _store_part(study_id, attempt, index, request, worker)
    send(STUDY_PREPARE, [study_id, attempt, index], WorkerSettings.from_env().redis_url)


@contextmanager
def _spill(owner: str):
    """(folder, dtype) for a part's pooled states while they are extracted (pidcore.extract.multirun:
    written batch by batch, read back a layer at a time): inside the feature folder when there is one,
    else a temporary folder; float16 when PIDFLOW_FEATURE_DTYPE is (the store keeps float16 then anyway).
    Removed once the runs are stored."""
    settings = feature_store.env_settings()
    if settings.directory is not None:
        folder = settings.directory / owner / f".spill-{uuid.uuid4().hex}"
    else:
        folder = Path(tempfile.mkdtemp(prefix="pidflow-spill-"))
    try:
        yield folder, settings.dtype
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _store_part(study_id: str, attempt: str, index: int, request, worker: str) -> None:
    """Extract every run of part `index` together (prefix reuse) and store them with the part's marker
    ("<i>:part": run keys, the model's description, where and how long), in one HSET."""
    from pidcore.study.run import extract_questions

    model, task = parts_of(request)[index]
    say = _progress(study_id, attempt, index, _label(request, index), 0.0, _extract_end(request))
    started = time.perf_counter()
    owner = features_owner(study_id, index)
    with _spill(owner) as (folder, dtype):
        features, info = extract_questions(request, model, task, progress=lambda f, m: say(f, f"extract: {m}"),
                                           with_model=True, spill_dir=folder, spill_dtype=dtype)
        values = {f"{index}:run:{number}": feature_store.save(owner, f"r{number}", item)
                  for number, item in enumerate(features.values())}
    values[f"{index}:part"] = json.dumps({"runs": list(features), "model": info, "worker": worker,
                                          "extract_s": round(time.perf_counter() - started, 3), "shards": None})
    _alive(study_id, attempt)
    client().hset(keys(study_id)["study-features"], mapping=values)
    say(1.0, "extracted; analyses queued for CPU workers")


def _land(study_id: str, attempt: str, index: int, done: dict, timing: dict, shards: list | None = None) -> None:
    payload = {"records": done["records"], "model": done["model"], "timing": timing, "shards": shards}
    _alive(study_id, attempt)
    client().hsetnx(keys(study_id)["study-parts"], str(index), json.dumps(payload))


def _maybe_finalize(study_id: str, attempt: str, request) -> None:
    """Once every part has landed or failed: the report (all landed), or the study failed saying which
    parts failed and why (the landed ones are kept for a re-run)."""
    redis, names = client(), keys(study_id)
    landed = {_text(field) for field in redis.hkeys(names["study-parts"])}
    failed = failed_parts(redis.hgetall(names["study"]))
    pairs = parts_of(request)
    if len(landed | set(failed)) < len(pairs):
        return
    if not failed:
        if redis.hsetnx(names["study"], "finalizing", attempt):
            send(STUDY_FINALIZE, [study_id, attempt], WorkerSettings.from_env().redis_url)
        return
    said = "; ".join(f"part {' · '.join(pairs[int(index)])} failed: {message}" for index, message in sorted(
        failed.items(), key=lambda item: int(item[0])))
    _fail(study_id, attempt, f"{said}. {len(landed)} of {len(pairs)} parts finished and are kept: submit the same "
                             f"study again to run only the missing parts")


def _fail_part(study_id: str, attempt: str, index: int, message: str) -> None:
    """Part `index` failed: say so (the other parts go on); the study fails once every part has ended."""
    from pidcore.study.run import StudyRequest

    try:
        job = _alive(study_id, attempt)
    except StudyGone:
        return
    client().hsetnx(keys(study_id)["study"], f"failed:{index}", message)
    _maybe_finalize(study_id, attempt, StudyRequest.from_dict(json.loads(job["request"])))


def failed_parts(raw: dict) -> dict[str, str]:
    """{part index: why} from a study hash's `failed:<i>` fields."""
    return {_text(key).split(":", 1)[1]: _text(value) for key, value in raw.items()
            if _text(key).startswith("failed:")}


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
    missing = [shard for shard in range(len(bounds)) if f"{index}:{shard}" not in stored]
    for shard in missing:
        start, stop = bounds[shard]
        send(STUDY_SHARD, [study_id, attempt, index, shard, start, stop], WorkerSettings.from_env().redis_url)
    if not missing:  # every shard stored by an earlier attempt (a re-run): merge and plan
        send(STUDY_PREPARE, [study_id, attempt, index], WorkerSettings.from_env().redis_url)
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
    # one shard's share of the part's extraction, after the shards already stored
    say = _progress(study_id, attempt, index, label, _extract_end(request) * landed / total, _extract_end(request) * (landed + 1) / total)
    owner, marker = features_owner(study_id, index), f"{index}:{shard}"
    with _spill(owner) as (folder, dtype):
        features, info = extract_questions(request, model, task, start, stop, with_model=True,
                                           progress=lambda f, m: say(f, f"extract: {m}"), spill_dir=folder,
                                           spill_dtype=dtype)
        values = {f"{marker}:{number}": feature_store.save(owner, f"s{shard}r{number}", item)
                  for number, item in enumerate(features.values())}
    values[marker] = json.dumps({"runs": list(features), "questions": [start, stop], "worker": worker,
                                 "extract_s": round(time.perf_counter() - started, 3), "model": info})
    _alive(study_id, attempt)
    client().hset(keys(study_id)["study-features"], mapping=values)


def _shard(study_id: str, attempt: str, index: int, shard: int, start: int, stop: int, worker: str) -> None:
    from pidcore.study.run import StudyRequest

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    if redis.hexists(names["study-parts"], str(index)):
        return _maybe_finalize(study_id, attempt, request)
    if redis.hexists(names["study-features"], f"{index}:part"):  # merged already: the plan was queued
        return
    if not redis.hexists(names["study-features"], f"{index}:{shard}"):
        _store_shard(study_id, attempt, index, shard, start, stop, request, worker)
    total = len(json.loads(redis.hget(names["study"], f"shards:{index}")))
    stored = redis.hmget(names["study-features"], [f"{index}:{number}" for number in range(total)])
    landed = sum(value is not None for value in stored)
    _progress(study_id, attempt, index, _label(request, index))(_extract_end(request) * landed / total,
                                                                 f"{landed}/{total} shards extracted")
    if landed < total:
        return
    redis.hsetnx(names["study"], f"merging:{index}", str(shard))
    if redis.hget(names["study"], f"merging:{index}").decode() != str(shard):
        return  # another shard queues the plan (this one's redelivery queues it again if its worker is lost)
    send(STUDY_PREPARE, [study_id, attempt, index], WorkerSettings.from_env().redis_url)


def _merge_shards(study_id: str, attempt: str, index: int, request) -> None:
    """Merge the part's stored shards in question order (worker/shards.merge), store the merged runs and
    the part's marker, then drop the shards (a merge lost midway is done again from them)."""
    from worker import shards

    redis, names = client(), keys(study_id)
    model, task = parts_of(request)[index]
    total = len(json.loads(redis.hget(names["study"], f"shards:{index}")))
    shards_info = [json.loads(value) for value in redis.hmget(names["study-features"],
                                                              [f"{index}:{number}" for number in range(total)])]
    runs = shards_info[0]["runs"]
    fields = [f"{index}:{shard}:{number}" for shard in range(total) for number in range(len(runs))]
    values = dict(zip(fields, redis.hmget(names["study-features"], fields), strict=True))
    if any(value is None for value in values.values()):
        raise RuntimeError(f"stored shards of part {model} · {task} are missing from Redis (evicted?)")
    owner = features_owner(study_id, index)
    stored = {}
    for number in range(len(runs)):  # one run in memory at a time
        merged = shards.merge([feature_store.load(values[f"{index}:{shard}:{number}"]) for shard in range(total)])
        stored[f"{index}:run:{number}"] = feature_store.save(owner, f"r{number}", merged)
        del merged
    info = [{k: v for k, v in item.items() if k != "model"} for item in shards_info]
    stored[f"{index}:part"] = json.dumps({"runs": runs, "model": shards_info[0]["model"], "worker": None,
                                         "extract_s": sum(item["extract_s"] for item in shards_info),
                                         "shards": info})
    _alive(study_id, attempt)
    redis.hset(names["study-features"], mapping=stored)
    redis.hdel(names["study-features"], *fields, *[f"{index}:{number}" for number in range(total)])
    folder = feature_store.env_settings().directory
    if folder is not None:
        for shard in range(total):
            for number in range(len(runs)):
                shutil.rmtree(folder / owner / f"s{shard}r{number}", ignore_errors=True)


# -- a part from features files (bring your own activations: a server folder or uploaded files) ----------

def _files_part(study_id: str, attempt: str, index: int, request, source: dict) -> dict:
    """finish_part of part `index` from its features files, as pidcore.study.run.features_part makes it (the
    first file's baseline; every file's knocked-out run under its window's key, named as the request plans
    it), and the part's runs stored as references to those files (feature_store.file_reference, or an
    upload's stored runs): nothing is copied, and the analyses read their layers in place."""
    from pidcore.study.run import Run, finish_part, plan_runs
    from worker.studies import source_files

    model, task = parts_of(request)[index]
    started = time.perf_counter()
    found = _read_sources(source, model, task)
    features, values = {}, {}
    for name, item, baseline_value, knockout_value in found:
        if "baseline" not in features:
            features["baseline"], values["baseline"] = item.features, baseline_value
        elif list(item.features.qids) != list(features["baseline"].qids):
            raise ValueError(f"{name}: its questions differ from {found[0][0]}'s (every file of a part must hold "
                             f"the same questions in the same order)")
        if item.knockout is not None:
            window = item.knockout.meta["knockout"]
            key = Run("?", "fixed", {"edges": list(window["edges"]), "layers": list(window["layers"])}).key
            features[key], values[key] = item.knockout, knockout_value
    num_layers = features["baseline"].num_layers - 1
    planned = {run.key: run for run in plan_runs(request, num_layers) if run.knockout is not None}
    runs = [Run("baseline", "baseline")]
    for key in features:
        if key != "baseline":
            spec = features[key].meta["knockout"]
            runs.append(planned.get(key) or Run(f"{'+'.join(spec['edges'])}@{spec['layers'][0]}-{spec['layers'][1]}",
                                                "fixed", {"edges": list(spec["edges"]), "layers": list(spec["layers"])}))
    depth = {"num_layers": num_layers, "source_model": features["baseline"].meta.get("source_model")}
    if source["kind"] == "dir":  # as features_part describes it
        info = {"name": model, "source": "features files", "folder": str(Path(source["path"]) / model / task),
                "files": [path.name for path in source_files(source, model, task)], **depth}
    else:
        info = {"name": model, "source": "uploaded features files", "files": [name for name, *_ in found], **depth}
    part = finish_part(request, model, task, features, model_info=info, runs=runs, questions_listed=False)
    part["missing_runs"] = [run.name for run in planned.values() if run.key not in features]
    stored = {f"{index}:run:{number}": values[key] for number, key in enumerate(features)}
    stored[f"{index}:part"] = json.dumps({"runs": list(features), "model": info, "worker": None, "shards": None,
                                          "extract_s": round(time.perf_counter() - started, 3), "files": True})
    _alive(study_id, attempt)
    client().hset(keys(study_id)["study-features"], mapping=stored)
    return part


def _read_sources(source: dict, model: str, task: str) -> list[tuple]:
    """[(name, FeatureSet, baseline value, knockout value or None)] of a part's files, lazily read (layers
    stay on disk); ValueError when the part has none or an upload is gone."""
    from pidcore.features.files import read_features
    from worker.studies import source_files
    from worker.uploads import PREFIX as UPLOAD
    from worker.uploads import UploadStore

    files = source_files(source, model, task)
    if not files:
        where = (f"{Path(source['path']) / model / task}" if source["kind"] == "dir"
                 else f"the study's features for {model} · {task}")
        raise ValueError(f"no features files (.npz, .safetensors, .pt) in {where} for part {model} · {task}")
    found = []
    if source["kind"] == "dir":
        for path in files:
            item = read_features(path, lazy=True)
            found.append((path.name, item, feature_store.file_reference(path, "baseline", item.sha256),
                          feature_store.file_reference(path, "knockout", item.sha256) if item.knockout is not None
                          else None))
        return found
    store = UploadStore(client())
    for sha in files:
        item = store.feature_set(sha)  # UploadMissing (a RuntimeError naming the file) when it is gone
        baseline_value, knockout_value = client().hmget(UPLOAD + sha, ["features", "knockout"])
        found.append((sha, item, baseline_value, knockout_value))
    return found


# -- the part's analyses on the cpu queue ---------------------------------------------------------------

def _stored_part(study_id: str, index: int, request, plan: dict | None = None, only: set | None = None):
    """(marker, key -> Features) of part `index`'s stored runs (`only`: those keys and the baseline), selected
    as its analyses take them when `plan` is given (correct_only rows, one Y); layers stay on disk until read."""
    from pidcore.study.run import select_part

    redis, names = client(), keys(study_id)
    raw = redis.hget(names["study-features"], f"{index}:part")
    if raw is None:
        raise RuntimeError(f"the extracted runs of part {_label(request, index)} are missing (evicted?)")
    marker = json.loads(raw)
    wanted = [(number, key) for number, key in enumerate(marker["runs"])
              if only is None or key in only or key == "baseline"]
    values = redis.hmget(names["study-features"], [f"{index}:run:{number}" for number, _ in wanted])
    if any(value is None for value in values):
        raise RuntimeError(f"the extracted runs of part {_label(request, index)} are missing (evicted?)")
    features = {key: feature_store.load(value) for (_, key), value in zip(wanted, values, strict=True)}
    if plan is not None:
        features, _ = select_part(request, features, keep=plan["keep"])
    return marker, features


def _prepare(study_id: str, attempt: str, index: int) -> None:
    """CPU: merge the part's shards if any, make its plan once (correct_only, one Y, seed dims, one
    Gaussianization plan per recipe, the layers each knockout run must analyse: pidcore.study.run.plan_part)
    and queue one study_analyze per unit not landed yet."""
    from pidcore.study.run import StudyRequest, finish_part, plan_part

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    if redis.hexists(names["study-parts"], str(index)):
        return _maybe_finalize(study_id, attempt, request)
    model, task = parts_of(request)[index]
    say = _progress(study_id, attempt, index, _label(request, index), _extract_end(request), _extract_end(request))
    if job.get(f"plan:{index}") is None:
        _count_delivery(study_id, f"{index}:prepare", f"the plan of part {model} · {task}")
        started = time.perf_counter()
        source = json.loads(job["source"]) if job.get("source") else None
        if source is not None:  # bring your own activations: the part's files, read in place
            say(0.0, "reading the features files")
            part = _files_part(study_id, attempt, index, request, source)
        else:
            if not redis.hexists(names["study-features"], f"{index}:part"):
                say(0.0, "merging the shards")
                _merge_shards(study_id, attempt, index, request)
            marker, features = _stored_part(study_id, index, request)
            part = finish_part(request, model, task, features, model_info=marker["model"])
        say(0.0, "planning the analyses")
        plan = plan_part(request, model, task, part, layer_batch=WorkerSettings.from_env().layer_batch)
        if part.get("missing_runs"):
            plan["missing_runs"] = part["missing_runs"]
        plan["prepare_s"] = round(time.perf_counter() - started, 3)
        _alive(study_id, attempt)
        redis.hsetnx(names["study"], f"plan:{index}", json.dumps(plan))  # a redelivery keeps the first plan
    plan = json.loads(redis.hget(names["study"], f"plan:{index}"))
    landed = {_text(field) for field in redis.hkeys(layers_key(study_id, index))}
    missing = [unit for unit in range(len(plan["units"])) if str(unit) not in landed]
    say(0.0, f"{len(plan['units'])} analyses queued for CPU workers ({len(plan['units']) - len(missing)} done)")
    for unit in missing:
        send(STUDY_ANALYZE, [study_id, attempt, index, unit], WorkerSettings.from_env().redis_url)
    if not missing:  # everything landed before (a redelivery): the part is assembled here
        _assemble(study_id, attempt, index, request, plan)


def _analyze(study_id: str, attempt: str, index: int, unit: int) -> None:
    """CPU: one unit (recipe, run, layer batch) of part `index`'s plan; it lands once (HSETNX) and the
    lander that completes the part assembles its records."""
    from pidcore.study.run import StudyRequest, analyse_unit

    redis, names = client(), keys(study_id)
    job = _alive(study_id, attempt)
    request = StudyRequest.from_dict(json.loads(job["request"]))
    if redis.hexists(names["study-parts"], str(index)):
        return _maybe_finalize(study_id, attempt, request)
    plan = json.loads(job[f"plan:{index}"])
    total = len(plan["units"])
    field = layers_key(study_id, index)
    if not redis.hexists(field, str(unit)):
        model, task = parts_of(request)[index]
        recipe, key, layers = plan["units"][unit]
        _count_delivery(study_id, f"{index}:unit:{unit}", f"analysis {recipe} {key} of part {model} · {task}")
        say = _progress(study_id, attempt, index, _label(request, index), _extract_end(request), 1.0)
        last = [0.0]

        def step(fraction: float, message: str) -> None:
            if time.monotonic() - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = time.monotonic()
            done = redis.hlen(field)
            say((done + min(max(fraction, 0.0), 1.0)) / total,
                f"{done}/{total} analyses done; {recipe} {key} layers {layers[0]}-{layers[-1]}: {message}")
        started, cpu = time.perf_counter(), time.process_time()
        _, features = _stored_part(study_id, index, request, plan, only={key})  # the unit's run and the baseline
        entries = analyse_unit(request, model, task, plan, features, unit, progress=step)
        value = json.dumps({"entries": entries, "seconds": round(time.perf_counter() - started, 3),
                            "cpu_s": round(time.process_time() - cpu, 3)})
        _alive(study_id, attempt)
        pipe = redis.pipeline(transaction=True)
        pipe.hsetnx(field, str(unit), value)
        pipe.hlen(field)
        new, done = pipe.execute()
        if done < total or not new:
            if done >= total:  # a duplicate after the part was completed by the other copy
                _maybe_assemble(study_id, attempt, index, request, plan)
            return
    elif redis.hlen(field) < total:
        return
    _maybe_assemble(study_id, attempt, index, request, plan)


def _maybe_assemble(study_id: str, attempt: str, index: int, request, plan: dict) -> None:
    if not client().hexists(keys(study_id)["study-parts"], str(index)):
        _assemble(study_id, attempt, index, request, plan)
    else:
        _maybe_finalize(study_id, attempt, request)


def _assemble(study_id: str, attempt: str, index: int, request, plan: dict) -> None:
    """Put a part's landed units together into its records (pidcore.study.run.assemble_part), land them
    once (HSETNX) and drop the part's stored runs; the last part queues the report. Idempotent."""
    from pidcore.study.run import assemble_part
    from worker.studies import remove_features

    redis = client()
    model, task = parts_of(request)[index]
    stored = redis.hgetall(layers_key(study_id, index))
    units = [json.loads(stored[str(unit).encode()]) for unit in range(len(plan["units"]))]
    marker, features = _stored_part(study_id, index, request, plan)
    records = assemble_part(request, model, task, plan, features, [unit["entries"] for unit in units])
    if plan.get("missing_runs"):  # planned runs a features part has no file for (as features_part says)
        records[-1]["missing_runs"] = plan["missing_runs"]
    analyze_s = plan.get("prepare_s", 0.0) + sum(unit["seconds"] for unit in units)  # worker-seconds
    timing = {"extract_s": marker["extract_s"], "analyze_s": round(analyze_s, 3),
              "plan_s": plan.get("prepare_s", 0.0), "units": len(units),
              "unit_cpu_s": round(sum(unit.get("cpu_s", 0.0) for unit in units), 3)}  # the analyses' CPU-seconds
    _land(study_id, attempt, index, {"records": records, "model": plan["model"]}, timing, marker.get("shards"))
    remove_features(study_id, index)
    redis.delete(layers_key(study_id, index))
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
              "plan_s": round(sum(p["timing"].get("plan_s", 0.0) for p in parts), 3),
              "analysis_units": sum(p["timing"].get("units", 0) for p in parts),
              "analysis_cpu_s": round(sum(p["timing"].get("unit_cpu_s", 0.0) for p in parts), 3),
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
        pipe.delete(names["study-parts"], names["study-progress"], names["study-features"],
                    *[layers_key(study_id, index) for index in range(len(parts_of(request)))])
        pipe.execute()
        for index in range(len(parts_of(request))):  # files a late duplicate of a shard may have left
            feature_store.remove(features_owner(study_id, index))


def _guarded(stage: str, study_id: str, attempt: str, body, index: int | None = None) -> None:
    """Run a task body: stop quietly when the study is gone; a time limit fails the study; any other error
    of a part's task fails that part (`index`), saying why, while the other parts go on."""
    try:
        body()
    except StudyGone:
        log.info("study %s: %s skipped (cancelled, deleted, restarted or finished)", study_id, stage)
    except StudyTimeLimit as exc:
        log.warning("study %s: %s", study_id, exc)
        _fail(study_id, attempt, str(exc))
    except Exception as exc:  # noqa: BLE001 - a failure of the science becomes the study's readable error
        log.exception("study %s: %s failed", study_id, stage)
        message = redact_paths(f"{stage} failed: {type(exc).__name__}: {exc}")
        if index is None:
            _fail(study_id, attempt, message)
        else:
            _fail_part(study_id, attempt, index, message)


@app.task(name=STUDY_PART, bind=True)
def study_part(self, study_id: str, attempt: str, index: int) -> None:
    """Extract part `index` (one model x task) of a study, store its runs and queue its plan (cpu)."""
    worker = self.request.hostname or "?"
    _guarded("study part", study_id, attempt, lambda: _part(study_id, attempt, index, worker), index)


@app.task(name=STUDY_PREPARE)
def study_prepare(study_id: str, attempt: str, index: int) -> None:
    """Merge part `index`'s shards if any, plan its analyses once and queue them (cpu)."""
    _guarded("study plan", study_id, attempt, lambda: _prepare(study_id, attempt, index), index)


@app.task(name=STUDY_ANALYZE)
def study_analyze(study_id: str, attempt: str, index: int, unit: int) -> None:
    """One analysis unit (recipe, run, layer batch) of part `index`; the last to land assembles the part."""
    _guarded("study analysis", study_id, attempt, lambda: _analyze(study_id, attempt, index, unit), index)


@app.task(name=STUDY_SHARD, bind=True)
def study_shard(self, study_id: str, attempt: str, index: int, shard: int, start: int, stop: int) -> None:
    """Extract questions [start, stop) of part `index` (every run); the last shard to land queues the plan."""
    worker = self.request.hostname or "?"
    _guarded("study shard", study_id, attempt, lambda: _shard(study_id, attempt, index, shard, start, stop, worker), index)


@app.task(name=STUDY_FINALIZE)
def study_finalize(study_id: str, attempt: str) -> None:
    """Build and store the report from every part's records (once)."""
    _guarded("study report", study_id, attempt, lambda: _finalize(study_id, attempt))
