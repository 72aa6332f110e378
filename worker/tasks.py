"""Celery tasks of one analysis: extract (queue gpu) -> analyze, one per (run, layer batch) (queue cpu)
-> finalize (queue cpu). Each task takes (job_id, attempt) and is idempotent: a redelivered extract reuses
stored features, a batch lands once (HSETNX), the result is written once (SET NX).

Progress (0..1): extract 0 -> its expected share of the time (pidcore.pipeline.costs.extract_share; 0.25 when
unknown), analyze -> 0.95 (finished batches plus fractions in flight), then 1.
"""

from __future__ import annotations

import json
import logging
import time

import redis
from celery.signals import worker_process_init
from kombu.exceptions import OperationalError

from worker import feature_store, jobs
from worker.cache import CONNECTION_ERRORS, JobStore, retrying
from worker.celery_app import ANALYZE, EXTRACT, FINALIZE, app, send
from worker.messages import FULL_REDIS, redact_paths
from worker.settings import WorkerSettings

log = logging.getLogger("pidflow.worker")
RUNS = ("baseline", "knockout")
EXTRACT_END, ANALYZE_END = 0.25, 0.95
MAX_DELIVERIES = 4  # a task started this often for one attempt (worker killed each time) fails the job
PROGRESS_EVERY_S = 0.25
LOST_REDIS = (*CONNECTION_ERRORS, OperationalError)  # OperationalError: kombu could not publish


class JobGone(Exception):
    """The job was deleted, restarted or already finished: the task stops quietly."""


def _context() -> tuple[WorkerSettings, JobStore]:
    """The settings and the job store of the Redis the environment names now (jobs' cache, one per Redis)."""
    return jobs._context()


def _store() -> JobStore:
    return _context()[1]


def _call(fn, *args, **kwargs):
    """A Redis write that waits for Redis to come back (PIDFLOW_REDIS_RETRY_S) instead of failing."""
    return retrying(fn, *args, wait_s=_context()[0].redis_retry_s, errors=LOST_REDIS, **kwargs)


def _send(name: str, args: list) -> None:
    _call(send, name, args)


def _alive_job(job_id: str, attempt: str) -> dict:
    job = _call(_store().get, job_id)
    if job is None or job.get("attempt") != attempt or job.get("state") in ("succeeded", "failed"):
        raise JobGone(job_id)
    return job


def _request(job: dict):
    from pidcore.pipeline.analysis import AnalysisRequest

    return AnalysisRequest.from_dict(json.loads(job["request"]))


class TaskTimeLimit(Exception):
    """A task ran longer than PIDFLOW_TASK_TIME_LIMIT_S (raised from its progress callback)."""


class _Reporter:
    """Progress callback that maps a step's fraction onto [start, end], at most every PROGRESS_EVERY_S.
    Every call also enforces the task's time limit (TaskTimeLimit), and every write finds out whether the
    job still exists (JobGone stops the task: a delete cancels running work within about a second)."""

    def __init__(self, job_id: str, attempt: str, stage: str, start: float, end: float):
        self.job_id, self.attempt, self.stage, self.start, self.end = job_id, attempt, stage, start, end
        self._last = 0.0
        self.limit_s = _context()[0].task_time_limit_s
        self.deadline = time.monotonic() + self.limit_s

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TaskTimeLimit(f"the {self.stage} task ran longer than {self.limit_s} s "
                                f"(PIDFLOW_TASK_TIME_LIMIT_S); ask for less work (questions, bootstrap, layers)")

    def due(self) -> bool:
        """Whether PROGRESS_EVERY_S passed since the last write (checks the time limit too)."""
        self.check_time()
        return time.monotonic() - self._last >= PROGRESS_EVERY_S

    def set(self, fraction: float, message: str, force: bool = False) -> None:
        self.check_time()
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        value = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        try:
            alive = _store().progress(self.job_id, self.attempt, self.stage, value, message)
        except CONNECTION_ERRORS as exc:  # progress is best effort; the work goes on
            log.warning("progress of %s not recorded: %s", self.job_id, exc)
            return
        if not alive:
            raise JobGone(self.job_id)

    __call__ = set


def _guarded(stage: str, job_id: str, attempt: str, body) -> None:
    """Run a task body: stop quietly when the job is gone, store any other failure as the job's error. The
    job's feature files go with a failure, and with a stop when the job was deleted or finished meanwhile
    (a task of a deleted job may have written them after the delete removed the folder)."""
    try:
        body()
    except JobGone:
        log.info("job %s: %s skipped (deleted, restarted or finished)", job_id, stage)
        _drop_files_unless_live(job_id)
    except LOST_REDIS as exc:
        log.exception("job %s: Redis lost during %s", job_id, stage)
        error = f"lost the connection to Redis during {stage}: {exc}; submit the request again to restart"
        if _call(_store().fail, job_id, attempt, error):  # raises (message redelivered) if Redis stays away
            _drop_files(job_id)
    except redis.exceptions.OutOfMemoryError:
        log.exception("job %s: Redis full during %s", job_id, stage)
        error = (f"{stage} failed: {FULL_REDIS}; this job's data did not fit. Submit it again once there is "
                 f"room, or ask for less (fewer questions or layers)")
        try:  # its intermediate data goes first, so that the fail script's small write fits
            _store().drop_work(job_id, attempt)
            if _store().fail(job_id, attempt, error):
                _drop_files(job_id)
        except redis.exceptions.RedisError:
            log.exception("job %s: could not record the failure either", job_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the science becomes the job's readable error
        log.exception("job %s: %s failed", job_id, stage)
        if _call(_store().fail, job_id, attempt, redact_paths(f"{stage} failed: {type(exc).__name__}: {exc}")):
            _drop_files(job_id)


def _drop_files(job_id: str) -> None:
    """Remove the job's feature folder (best effort: the heartbeat's sweep takes what is left)."""
    try:
        feature_store.remove(job_id)
    except (OSError, ValueError) as exc:
        log.warning("job %s: feature files not removed: %s", job_id, exc)


def _drop_files_unless_live(job_id: str) -> None:
    """After a task stopped because its job is gone: remove the feature folder when the job was deleted,
    finished or failed; a restarted job (queued or running under a newer attempt) keeps it."""
    try:
        job = _store().get(job_id)
    except redis.exceptions.RedisError:
        return
    if job is None or job.get("state") not in ("queued", "running"):
        _drop_files(job_id)


def _count_delivery(job_id: str, attempt: str, name: str) -> None:
    deliveries = _call(_store().count, job_id, attempt, f"deliveries:{name}")
    if deliveries < 0:
        raise JobGone(job_id)
    if deliveries > MAX_DELIVERIES:
        raise RuntimeError(f"{name} was started {deliveries - 1} times and its worker was lost each time "
                           f"(killed, or out of memory?)")


# -- extract ------------------------------------------------------------------------------------------

def _load_features(job_id: str) -> dict | None:

    store = _store()
    baseline = _call(store.features, job_id, "baseline")
    if baseline is None:
        return None
    knockout = _call(store.features, job_id, "knockout")
    return {"baseline": feature_store.load(baseline),
            "knockout": feature_store.load(knockout) if knockout is not None else None}


def _extract_end(request) -> float:
    """Where extraction ends on the progress bar: its expected share of the wall time, by stage speeds."""
    from pidcore.pipeline.costs import extract_share

    try:
        return extract_share(request.to_dict(), None, default=EXTRACT_END) * ANALYZE_END
    except Exception:  # noqa: BLE001 - progress is best effort
        return EXTRACT_END


def _features_for(request, reporter) -> dict:
    """Extract the request's features, or read them from an uploaded features file (model "features:<sha>")."""
    from pidcore.features.uploaded import is_features_model

    if is_features_model(request.model):
        from worker.uploads import uploaded_features

        return _call(uploaded_features, _store().redis, request)
    from pidcore.pipeline.analysis import extract_features

    return extract_features(request, progress=reporter)


def _extract(job_id: str, attempt: str) -> None:
    store = _store()
    job = _alive_job(job_id, attempt)
    request = _request(job)
    reporter = _Reporter(job_id, attempt, "extract", 0.0, _extract_end(request))
    features = _load_features(job_id)
    if features is None:
        _count_delivery(job_id, attempt, "extract")
        reporter(0.0, "extracting features", force=True)
        started = time.perf_counter()
        if _queue_shards(job_id, attempt, request, reporter):
            return  # the shard that completes the set merges them and plans the analysis
        features = _features_for(request, reporter)
        stored = {run: feature_store.save(job_id, run, item) for run, item in features.items() if item is not None}
        if _call(store.put, job_id, attempt, "features", stored) < 0:
            raise JobGone(job_id)
        _call(store.put, job_id, attempt, "job", {"extract_s": f"{time.perf_counter() - started:.3f}"})
    _plan(job_id, attempt, features, reporter)


def _queue_shards(job_id: str, attempt: str, request, reporter) -> bool:
    """Queue one extract_shard per PIDFLOW_EXTRACT_SHARD questions (worker/shards.py); False when the
    request is extracted whole."""
    from worker import shards

    size = shards.shard_size()
    if not shards.shardable(request, size):
        return False
    bounds = shards.shard_bounds(len(shards.question_items(request)), size)
    if len(bounds) < 2:
        return False
    if _call(_store().put, job_id, attempt, "job", {"shards": str(len(bounds)), "shards_started": time.time()},
             nx=True) < 0:
        raise JobGone(job_id)
    reporter(0.0, f"extracting {len(bounds)} shards of up to {size} questions", force=True)
    for index, (start, stop) in enumerate(bounds):
        _send(shards.EXTRACT_SHARD, [job_id, attempt, index, start, stop])
    return True


def _extract_shard(job_id: str, attempt: str, index: int, start: int, stop: int) -> None:
    from pidcore.pipeline.analysis import with_baseline_target
    from worker import shards

    store = _store()
    job = _alive_job(job_id, attempt)
    request = _request(job)
    total = int(job["shards"])
    if _call(store.features, job_id, f"baseline:shard:{index}") is None:
        _count_delivery(job_id, attempt, f"shard:{index}")
        features = shards.extract_shard(request, start, stop)
        stored = {f"{run}:shard:{index}": feature_store.save(job_id, f"{run}-shard{index}", item)
                  for run, item in features.items() if item is not None}
        if _call(store.put, job_id, attempt, "features", stored, nx=True) < 0:
            raise JobGone(job_id)
    names = {name.decode() for name in _call(store.redis.hkeys, store.keys(job_id)["features"])}
    landed = sum(f"baseline:shard:{i}" in names for i in range(total))
    reporter = _Reporter(job_id, attempt, "extract", 0.0, _extract_end(request))
    reporter(landed / total, f"{landed}/{total} shards extracted", force=True)
    if landed < total:
        return
    if _call(store.put, job_id, attempt, "job", {"merged_by": str(index)}, nx=True) < 0:
        raise JobGone(job_id)
    if _alive_job(job_id, attempt).get("merged_by") != str(index):
        return  # another shard merges (this one's redelivery merges again if its worker is lost)
    runs = ["baseline"] + (["knockout"] if request.knockout else [])
    features = {run: shards.merge([feature_store.load(_call(store.features, job_id, f"{run}:shard:{i}"))
                                   for i in range(total)]) for run in runs}
    if request.knockout and request.knockout_target == "baseline":
        features["knockout"] = with_baseline_target(features["knockout"], features["baseline"])
    stored = {run: feature_store.save(job_id, run, item) for run, item in features.items()}
    if _call(store.put, job_id, attempt, "features", stored) < 0:
        raise JobGone(job_id)
    _call(store.put, job_id, attempt, "job",
          {"extract_s": f"{time.time() - float(_alive_job(job_id, attempt)['shards_started']):.3f}"})
    _plan(job_id, attempt, {**{"knockout": None}, **features}, reporter)


@app.task(name="pidflow.extract_shard")
def extract_shard(job_id: str, attempt: str, index: int, start: int, stop: int) -> None:
    """Extract questions [start, stop) of a job (both runs); the last shard to land merges and plans."""
    _guarded("extract", job_id, attempt, lambda: _extract_shard(job_id, attempt, index, start, stop))


def _run_batches(plan: dict, run: str) -> list:
    """The layer batches of one run: the knockout run's cover only the layers that differ from the baseline's
    (the others take the baseline's entries exactly); plans from before that hold one list for every run."""
    return plan.get("run_batches", {}).get(run, plan["batches"])


def _plan(job_id: str, attempt: str, features: dict, reporter) -> None:
    """Fix the analysis plan once and queue one analyze task per (run, layer batch) not yet landed."""
    from pidcore.pipeline.analysis import differing_layers, gaussianization_plan

    store, settings = _store(), _context()[0]
    runs = [run for run in RUNS if features.get(run) is not None]
    num_layers = features["baseline"].num_layers
    step = settings.layer_batch

    def batches(layers: list) -> list:
        return [layers[i:i + step] for i in range(0, len(layers), step)]

    plan = {"runs": runs, "batches": batches(list(range(num_layers))), "run_batches": {}}
    if features.get("knockout") is not None:
        plan["run_batches"]["knockout"] = batches(differing_layers(features["baseline"], features["knockout"]))
    # auto's choices, once for every layer batch and both runs (batching never changes the numbers);
    # deterministic, and a redelivery keeps the first plan anyway
    plan["gaussianization"] = gaussianization_plan(features["baseline"], _request(_alive_job(job_id, attempt))).to_dict()
    total = sum(len(_run_batches(plan, run)) for run in runs)
    fields = {"plan": json.dumps(plan), "total": str(total), "analyze_started": time.time()}
    if _call(store.put, job_id, attempt, "job", fields, nx=True) < 0:  # a redelivery keeps the first plan
        raise JobGone(job_id)
    plan = json.loads(_alive_job(job_id, attempt)["plan"])
    total = sum(len(_run_batches(plan, run)) for run in plan["runs"])
    reporter.stage = "analyze"
    reporter(1.0, f"analysing {num_layers} layers in {total} batch(es)", force=True)
    done = _call(store.batches, job_id)
    for run in plan["runs"]:
        for index, layers in enumerate(_run_batches(plan, run)):
            if f"{run}:{index}" not in done:
                _send(ANALYZE, [job_id, attempt, run, index, layers])
    if len(done) >= total and _call(store.result, job_id) is None:  # everything landed before a redelivery
        _send(FINALIZE, [job_id, attempt])


@app.task(name=EXTRACT)
def extract(job_id: str, attempt: str) -> None:
    """Extract (baseline and knockout) features, store them, queue one analyze task per layer batch."""
    _guarded("extract", job_id, attempt, lambda: _extract(job_id, attempt))


# -- analyze ------------------------------------------------------------------------------------------

def _analyze(job_id: str, attempt: str, run: str, index: int, layers: list[int]) -> None:
    from pidcore.pipeline.analysis import analyze_layers

    store = _store()
    job = _alive_job(job_id, attempt)
    field = f"{run}:{index}"
    total = int(job["total"])
    reporter = _Reporter(job_id, attempt, "analyze", _extract_end(_request(job)), ANALYZE_END)
    value = _call(store.has_batch, job_id, field)
    if value is None:
        _count_delivery(job_id, attempt, field)
        raw = _call(store.features, job_id, run)
        if raw is None:
            _alive_job(job_id, attempt)
            raise RuntimeError(f"the {run} features of this job are missing from Redis (evicted?)")

        def on_batch(fraction: float, message: str) -> None:
            if not reporter.due():  # the pipeline calls this often (every bootstrap round at most 0.2 s apart)
                return
            try:
                landed = store.part(job_id, attempt, field, fraction)
            except CONNECTION_ERRORS:
                return
            if landed is None:
                raise JobGone(job_id)
            reporter(landed / total, f"analyze {run}: {message}", force=True)

        entries = analyze_layers(feature_store.load(raw), _request(job), layers=layers, progress=on_batch,
                                 plan=json.loads(job["plan"]).get("gaussianization"))
        value = json.dumps(entries)
    new, done, go = _call(store.land, job_id, attempt, field, value)
    if new < 0:
        raise JobGone(job_id)
    reporter(done / total, f"{done}/{total} layer batches done", force=True)
    if go:
        _send(FINALIZE, [job_id, attempt])


@app.task(name=ANALYZE)
def analyze(job_id: str, attempt: str, run: str, index: int, layers: list[int]) -> None:
    """PID of one batch of layers of one run; the last batch to land queues finalize."""
    _guarded("analyze", job_id, attempt, lambda: _analyze(job_id, attempt, run, index, layers))


# -- finalize -----------------------------------------------------------------------------------------

def _finalize(job_id: str, attempt: str) -> None:
    from pidcore.pipeline.analysis import assemble_result

    store = _store()
    job = _alive_job(job_id, attempt)
    _Reporter(job_id, attempt, "finalize", 0.0, 1.0)(ANALYZE_END, "assembling the result", force=True)
    plan = json.loads(job["plan"])
    features = _load_features(job_id)
    if features is None:
        raise RuntimeError("the features of this job are missing from Redis (evicted?)")
    stored = _call(store.batches, job_id)
    layer_results = {"knockout": None}
    for run in plan["runs"]:
        layer_results[run] = [entry for index in range(len(_run_batches(plan, run)))
                              for entry in json.loads(stored[f"{run}:{index}"])]
    timing = {"extract_s": float(job.get("extract_s") or 0.0),
              "analyze_s": round(time.time() - float(job["analyze_started"]), 3)}
    document = assemble_result(_request(job), features, layer_results, timing=timing)
    if _call(store.finish, job_id, attempt, json.dumps(document, separators=(",", ":"))) < 0:
        raise JobGone(job_id)
    _keep_probe(store, job_id, _request(job), features["baseline"])
    feature_store.remove(job_id)


PROBE_MODELS = ("demo",)  # whose pooled features are kept after the result (a few MB): the own-question box


def _keep_probe(store: JobStore, job_id: str, request, features) -> None:
    """Keep the baseline features of a demo-model analysis next to its result (best effort: a failure here
    only means the own-question box cannot place a new question in this analysis)."""
    if request.model not in PROBE_MODELS:
        return
    import dataclasses

    import numpy as np

    try:
        dense = dataclasses.replace(features, **{name: np.stack([np.asarray(getattr(features, name)[layer])
                                                                 for layer in range(features.num_layers)])
                                                 for name in ("vision", "language")})
        _call(store.keep_probe, job_id, dense.to_bytes())
    except Exception:  # noqa: BLE001 - the result is written; this is an extra
        log.warning("job %s: its features were not kept for the own-question box", job_id, exc_info=True)


@app.task(name=FINALIZE)
def finalize(job_id: str, attempt: str) -> None:
    """Assemble the result document from the stored batches and write it once."""
    _guarded("finalize", job_id, attempt, lambda: _finalize(job_id, attempt))


@worker_process_init.connect
def _preload(**_) -> None:
    """Warm a starting worker process (the solo pool's, or each prefork child): import torch and pidcore,
    load each PIDFLOW_WORKER_PRELOAD model into the adapter cache the extract task uses, and run one
    forward of two questions with it, so that the first job does not pay seconds of loading. (Not through
    extract_features: two questions are too few for its estimability check, rightly.)"""
    from pidcore.data import answer_set, load_questions
    from pidcore.extract import extract
    from pidcore.pipeline.analysis import AnalysisRequest, _adapter

    for model in _context()[0].preload:
        started = time.perf_counter()
        try:
            request = AnalysisRequest(model=model)
            items = load_questions(request.dataset, list(request.tasks)[:1], split=request.split, n=2,
                                   seed=request.seed)[:2]
            warmed = extract(_adapter(model), items, answers=answer_set(request.dataset),
                             language_pooling=request.language_pooling, target=request.target)
        except Exception:  # noqa: BLE001 - a failed warm-up must not stop the worker
            log.exception("could not preload model %r", model)
        else:
            log.info("preloaded model %r (a forward of %d questions) in %.1f s", model, warmed.n,
                     time.perf_counter() - started)
