"""A study at real width without a GPU, through a real Redis and real Celery workers (issue 17, "what must be
shown"), and the projected analysis cost of the seed's whole study.

    nice -n 5 .venv/bin/python benchmarks/bench_study_real_width.py                 # everything (long)
    .venv/bin/python benchmarks/bench_study_real_width.py --profile-only            # per-stage cost, projection
    .venv/bin/python benchmarks/bench_study_real_width.py --skip-full --small-layers 9

Three steps (each can be skipped):

1. **profile**: one layer of each recipe at --n x --width (default 1,000 x 4,096, float16 features of
   pidcore.synthetic.real_width_system, --bootstrap rounds, one thread), under cProfile: CPU-seconds of the
   layer and of its stages (copula normal scores, PCA Gram, PID point estimate, bootstrap draws, input
   preparation), then the **projection** of the seed's whole study (2 models x 6 tasks x 34 runs x 2 recipes x
   33 layers, minus the layers a knockout run takes from the baseline: counted from the study's own plan).
2. **full part**: one "model" x one task with the seed's whole run plan (baseline, image->question cut, the
   k = 9 sweep: 34 runs on 32 decoder layers) from features files at --n x --width x 33 layers, read in place
   by `--workers` real Celery workers (cpu queue) through `worker.studies.submit({... "features_dir"})`:
   CPU-seconds per layer analysis and for the whole part, peak RSS and CPU of each worker process
   (/proc/<pid>/status VmHWM, /proc/<pid>/stat), the share of layer analyses skipped as identical to the
   baseline, and the report's numbers checked equal to the same analyses run one by one
   (pidcore.pipeline.analysis.analyze_layers, per run and layer) on a sample of layers of every recipe.
   Disk: the baseline file holds 33 x n x width x 2 float16 (540 MB at full shape); each knockout file holds
   its own run whole (the layers before its window are the baseline's, as a real knockout's are) and leaves
   its copy of the baseline's arrays as a sparse hole (zeros, no disk blocks): features_part reads a knockout
   file's baseline only for its question ids. 34 x 540 MB = 18 GB on disk at full shape (--folder).
3. **small**: two "models" x two tasks at --small-n questions (same width, --small-layers layers, the seed's
   plan on that depth) through the same workers; the whole report equals
   pidcore.study.run.run_study(features_dir=...) run in this process.

Prints the load average before and after each step: on this shared machine wall times are noise; CPU-seconds
are what the projection uses.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import resource
import shutil
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread, as the workers: CPU-s comparable, numbers equal
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_STUDY = {"models": 2, "tasks": 6, "decoder_layers": 32}  # LLaVA-1.5/1.6-7B x the six GQA tasks
TASK = "shape"  # any task name of the request's dataset (the files do not depend on it)
STAGES = {  # cProfile entries (file suffix, function) whose cumulative CPU time is the stage's; the profiler
    # counts the process's CPU (time.process_time), so the reduction's 2-thread pool is inside `crossfit`
    "reduction: copula normal scores + PCA (crossfit)": [("gaussianize/latents.py", "crossfit")],
    "PID point estimate (bias-corrected, pointwise)": [("estimators/estimate.py", "corrected_pid"),
                                                       ("pipeline/layerwise.py", "_pointwise")],
    "bootstrap draws": [("pipeline/layerwise.py", "_draws")],
    "input checks and float64 copies": [("pipeline/layerwise.py", "_prepared")],
}


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


# -- synthetic features files ------------------------------------------------------------------------------

def _safetensors(path: Path, tensors: list[tuple[str, str, tuple, object]], metadata: dict) -> None:
    """Write a safetensors file tensor by tensor: (name, dtype "F16"/"F32", shape, writer) where writer is an
    array, a callable(file) writing the tensor's bytes (e.g. layer by layer), or None for a sparse hole of
    zeros (nothing written, no disk blocks)."""
    header, offset = {"__metadata__": metadata}, 0
    for name, dtype, shape, _ in tensors:
        size = math.prod(shape) * {"F16": 2, "F32": 4}[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(text)) + text)
        base = file.tell()
        for name, _, _, writer in tensors:
            start, end = header[name]["data_offsets"]
            file.seek(base + start)
            if writer is None:
                continue
            if callable(writer):
                writer(file)
            else:
                file.write(np.ascontiguousarray(writer).tobytes())
            assert file.tell() == base + end, name
        file.truncate(base + offset)


def write_part(folder: Path, model: str, task: str, n: int, width: int, layers: int, seed: int) -> dict:
    """Features files of one (model, task) with the seed's run plan on `layers` - 1 decoder layers: the baseline
    (pidcore.synthetic.real_width_system, float16) and one file per knockout run of that plan, whose hidden
    states from its window's first decoder layer + 1 on are a window-dependent mix of the baseline's. Returns
    {"files", "bytes_on_disk", "seconds"}."""
    from pidcore.study.run import default_request, plan_runs
    from pidcore.synthetic import real_width_system

    started = time.perf_counter()
    where = folder / model / task
    where.mkdir(parents=True, exist_ok=True)
    system = real_width_system(n=n, width=width, layers=layers, seed=seed, system_seed=seed, dtype=np.float16)
    vision, language = system.x1, system.x2  # lists of (n, width) float16
    y = np.asarray(system.y, dtype=np.float32)
    del system
    meta = {"qids": json.dumps([f"{task}-{i}" for i in range(n)]), "tasks": json.dumps([task] * n),
            "meta": json.dumps({"model": f"{model} (synthetic, real width)", "target": "hidden"})}
    shape = (layers, n, width)

    def stacked(arrays):
        def write(file):
            for array in arrays:
                file.write(np.ascontiguousarray(array).tobytes())
        return write

    _safetensors(where / "baseline.safetensors", [("vision", "F16", shape, stacked(vision)),
                                                  ("language", "F16", shape, stacked(language)),
                                                  ("target", "F32", y.shape, y)], meta)
    request = default_request(sweep={"edges": ["image->question"], "k": 9})
    runs = [run for run in plan_runs(request, layers - 1) if run.knockout is not None]
    for number, run in enumerate(runs):
        first, last = run.knockout["layers"]
        mix = 0.55 + 0.4 * first / layers  # differs from window to window

        def knocked(arrays, first=first, mix=mix):
            for layer, array in enumerate(arrays):
                if layer <= first:  # before the window: the baseline's states, bit for bit
                    yield array
                else:
                    other = arrays[(layer + 3) % layers].astype(np.float32)
                    yield (mix * array.astype(np.float32) + (1 - mix) * other).astype(np.float16)
        file_meta = {**meta, "meta": json.dumps({**json.loads(meta["meta"]), "knockout": run.knockout})}
        _safetensors(where / f"ko-{number:02d}-{first:02d}-{last:02d}.safetensors",
                     [("vision", "F16", shape, None), ("language", "F16", shape, None), ("target", "F32", y.shape, None),
                      ("knockout.vision", "F16", shape, stacked(knocked(vision))),
                      ("knockout.language", "F16", shape, stacked(knocked(language))),
                      ("knockout.target", "F32", y.shape, y)], file_meta)
    files = sorted(where.iterdir())
    on_disk = sum(path.stat().st_blocks * 512 for path in files)
    return {"files": len(files), "bytes_on_disk": on_disk, "seconds": time.perf_counter() - started}


# -- real Redis and real workers ---------------------------------------------------------------------------

class Stack:
    """A private redis-server and `workers` Celery workers on the cpu queue (OMP_NUM_THREADS=1 each)."""

    def __init__(self, workers: int, folder: Path, extra_env: dict | None = None):
        from app.redis_local import LocalRedis
        from tests.worker.conftest import WorkerProcess

        self.redis = LocalRedis(directory=folder / "redis").start()
        os.environ["REDIS_URL"] = self.redis.url
        env = {**os.environ, "REDIS_URL": self.redis.url, "OMP_NUM_THREADS": "1", "PIDFLOW_WORKER_PRELOAD": "0",
               **(extra_env or {})}
        self.workers = [WorkerProcess(f"cpu{i}", folder / f"cpu{i}.log", env, "cpu") for i in range(workers)]
        for worker in self.workers:
            worker.start()

    def processes(self) -> dict:
        """{name: {"cpu_s", "peak_rss_mib"}} of each worker process (the solo pool runs tasks in it)."""
        out = {}
        ticks = os.sysconf("SC_CLK_TCK")
        for worker in self.workers:
            pid = worker.process.pid
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
            out[worker.name] = {"cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
                                "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024}
        return out

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.redis.stop()


def run_study_on_workers(body: dict, poll_s: float = 1.0, label: str = "") -> tuple[dict, dict, float]:
    """Submit through worker.studies (as the API does) and wait: (report, plans {part: plan}, wall seconds)."""
    from worker import studies

    started = time.perf_counter()
    study_id = studies.submit(body)["id"]
    last = 0.0
    while (info := studies.status(study_id))["state"] not in ("succeeded", "failed"):
        if time.perf_counter() - last > 60:
            last = time.perf_counter()
            stage = info["stages"]["analysis"]
            print(f"  {label} {time.perf_counter() - started:6.0f} s: {stage['done']}/{stage['total']} analysis units "
                  f"done; load {load()}", flush=True)
        time.sleep(poll_s)
    wall = time.perf_counter() - started
    if info["state"] != "succeeded":
        raise SystemExit(f"the study failed: {info['error']}")
    redis = studies.client()
    raw = redis.hgetall(studies.keys(study_id)["study"])
    plans = {int(k.decode().split(":")[1]): json.loads(v) for k, v in raw.items() if k.decode().startswith("plan:")}
    return studies.report(study_id), plans, wall


def skipped_share(plans: dict, recipes: int) -> tuple[int, int]:
    """(layer analyses run, layer analyses a study without reuse would run) over the parts' plans."""
    run = sum(len(layers) for plan in plans.values() for _, _, layers in plan["units"])
    whole = sum(len(plan["keys"]) * len(plan["differ"]["baseline"]) * recipes for plan in plans.values())
    return run, whole


# -- checks ------------------------------------------------------------------------------------------------

def check_sample(folder: Path, model: str, request: dict, report: dict, plan: dict, samples: list) -> int:
    """The report's layer entries at `samples` [(recipe, run name, layer)] equal analyze_layers of that run and
    layer alone (the run's AnalysisRequest, the baseline's Gaussianization plan): the count checked."""
    from threadpoolctl import threadpool_limits

    from pidcore.features.files import read_features
    from pidcore.pipeline.analysis import analyze_layers, gaussianization_plan, with_baseline_target
    from pidcore.study.run import StudyRequest, analysis_request

    study = StudyRequest.from_dict(request)
    files = sorted((folder / model / TASK).glob("*.safetensors"))
    baseline = read_features(files[0], lazy=True).features
    by_name = {run["name"]: run for run in plan["runs"]}
    dims = (plan.get("seed_dims") or {}).get("dims")
    plans, checked = {}, 0
    series = {(row["recipe"], row["run"]): row["layers"] for row in report["series"] if row["model"] == model}
    for recipe, name, layer in samples:
        knockout = by_name[name]["knockout"]
        analysis = analysis_request(study, model, TASK, recipe, knockout, dims)
        if recipe not in plans:
            plans[recipe] = gaussianization_plan(baseline, analysis_request(study, model, TASK, recipe, None, dims))
        if knockout is None:
            features = baseline
        else:
            path = next(p for p in files if p.stem.startswith("ko-") and _window(p) == knockout["layers"])
            features = with_baseline_target(read_features(path, lazy=True).knockout, baseline)
        with threadpool_limits(limits=1):  # as the workers (OMP_NUM_THREADS=1)
            alone, = analyze_layers(features, analysis, layers=[layer], plan=plans[recipe])
        shown = next(entry for entry in series[(recipe, name)] if entry["layer"] == layer)
        for key in ("redundancy", "unique_vision", "unique_language", "synergy", "total"):
            if alone[key] != shown[key]:
                raise SystemExit(f"{recipe} {name} layer {layer}: {key} {shown[key]!r} in the report, "
                                 f"{alone[key]!r} analysed alone")
        checked += 1
    return checked


def _window(path: Path) -> list[int]:
    _, _, first, last = path.stem.split("-")  # ko-<number>-<first>-<last>
    return [int(first), int(last)]


def same_report(report: dict, reference: dict) -> list[str]:
    """The sections of the report that differ from the reference's (timing and request aside)."""
    return [section for section in ("headline", "knockouts", "series", "parts", "correlations", "findings")
            if json.dumps(report[section], sort_keys=True) != json.dumps(reference[section], sort_keys=True)]


# -- per-stage profile and projection ----------------------------------------------------------------------

def profile_layer(n: int, width: int, bootstrap: int, seed_dims_layers: int) -> dict:
    """CPU-seconds of one layer of each recipe at n x width (float16 features, one thread) and of its stages."""
    import torch

    from pidcore.extract.features import Features
    from pidcore.pipeline.analysis import analyze_layers, gaussianization_plan
    from pidcore.study.run import StudyRequest, analysis_request, seed_dims
    from pidcore.synthetic import real_width_system

    torch.set_num_threads(1)
    layers = max(3, seed_dims_layers)  # the profiled layer is the middle one (the strongest signal)
    system = real_width_system(n=n, width=width, layers=layers, seed=0, dtype=np.float16)
    blank = np.array([""] * n)
    features = Features(vision=np.stack(system.x1), language=np.stack(system.x2), target=system.y.astype(np.float32),
                        qids=np.array([f"q{i}" for i in range(n)]), tasks=np.full(n, TASK), answers=blank,
                        predicted=blank, p_correct=np.full(n, np.nan), correct=np.zeros(n, bool),
                        answer_set=np.array([], dtype=str), questions=blank, image_ids=blank,
                        meta={"model": {"name": "synthetic"}, "target": "hidden"})
    study = StudyRequest.from_dict({"tasks": [TASK], "n_questions": n, "bootstrap": bootstrap})
    start = time.process_time()
    dims = seed_dims(features, study.seed_variance, study.bootstrap)
    seed_dims_s = time.process_time() - start
    out = {"seed_dims": dims["dims"], "seed_dims_cpu_s_per_layer": seed_dims_s / layers, "recipes": {},
           "layers": layers}
    layer = layers // 2
    for recipe in ("pidflow", "seed"):
        analysis = analysis_request(study, "synthetic", TASK, recipe, None, dims["dims"])
        start = time.process_time()
        plan = gaussianization_plan(features, analysis)
        plan_s = time.process_time() - start
        start = time.process_time()
        analyze_layers(features, analysis, layers=[layer], plan=plan)
        layer_s = time.process_time() - start  # without the profiler's overhead
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        analyze_layers(features, analysis, layers=[layer], plan=plan)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stages = {}
        for stage, entries in STAGES.items():
            stages[stage] = sum(value[3] for (file, _, function), value in stats.stats.items()
                                if any(file.endswith(suffix) and function == name for suffix, name in entries))
        top = sorted(((value[2], f"{Path(file).name}:{function}") for (file, _, function), value in stats.stats.items()),
                     reverse=True)[:6]
        out["recipes"][recipe] = {"cpu_s": layer_s, "plan_cpu_s": plan_s, "stages_s": stages, "top": top,
                                  "profiled_s": stats.total_tt, "dims": list(analysis.dims),
                                  "pieces": _pieces(features, layer, analysis)}
    return out


def _pieces(features, layer: int, analysis) -> dict:
    """CPU-seconds of the reduction's pieces on one source of one layer, alone: the copula's normal scores of
    the (n, width) features and the PCA fit and transform (Gram) of what it gives (the seed recipe: PCA of the
    raw features, then normal scores of the kept components)."""
    from pidcore.gaussianize.copula import normal_scores
    from pidcore.reduce.pca import PCAReducer

    x = np.asarray(features.vision[layer], dtype=np.float64)
    dims = int(analysis.dims[0])
    start = time.process_time()
    if analysis.reduce_first:
        reduced = PCAReducer(n_components=dims, cap_at_rank=True).fit(x).transform(x)
        pca_s = time.process_time() - start
        start = time.process_time()
        normal_scores(reduced)
        copula_s = time.process_time() - start
    else:
        scores = normal_scores(x)
        copula_s = time.process_time() - start
        start = time.process_time()
        PCAReducer(n_components=dims, cap_at_rank=True).fit(scores).transform(scores)
        pca_s = time.process_time() - start
    return {"copula normal scores": copula_s, "PCA fit + transform": pca_s}


def seed_study_layers() -> dict:
    """Layer analyses of the seed's whole study: with and without the layers taken from the baseline."""
    from pidcore.study.run import default_request, plan_runs

    layers = SEED_STUDY["decoder_layers"] + 1
    runs = plan_runs(default_request(sweep={"edges": ["image->question"], "k": 9}), SEED_STUDY["decoder_layers"])
    per_recipe = sum(layers if run.knockout is None else layers - (run.knockout["layers"][0] + 1) for run in runs)
    parts = SEED_STUDY["models"] * SEED_STUDY["tasks"]
    return {"runs": len(runs), "parts": parts, "all": parts * 2 * len(runs) * layers, "run": parts * 2 * per_recipe,
            "per_part_recipe": per_recipe}


def print_projection(per_layer: dict, part_overhead_s: float, source: str) -> float:
    counts = seed_study_layers()
    per_recipe = counts["per_part_recipe"] * counts["parts"]
    total = sum(per_layer[recipe] * per_recipe for recipe in ("pidflow", "seed")) + counts["parts"] * part_overhead_s
    print(f"projection ({source}): the seed's study = {counts['parts']} parts x {counts['runs']} runs x 2 recipes x 33 "
          f"layers = {counts['all']:,} layer analyses, {counts['run']:,} run ({1 - counts['run'] / counts['all']:.1%} "
          f"taken from the baseline); pidflow {per_layer['pidflow']:.2f} + seed {per_layer['seed']:.2f} CPU-s a layer, "
          f"{part_overhead_s:.0f} CPU-s of planning a part -> {total:,.0f} CPU-s = {total / 3600:.2f} CPU-hours "
          f"(goal <= 3); on this machine's 2 cores at best {total / 7200:.2f} h wall")
    return total


# -- main --------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=33, help="pooled layers of the full part (decoder + 1)")
    parser.add_argument("--bootstrap", type=int, default=200, help="rounds (the study's default: 200)")
    parser.add_argument("--part-bootstrap", type=int, default=None,
                        help="rounds of the full part and the small study (default: --bootstrap)")
    parser.add_argument("--profile-layers", type=int, default=33,
                        help="layers generated for the profile (the seed recipe's dims are the most any needs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small-n", type=int, default=200)
    parser.add_argument("--small-layers", type=int, default=33)
    parser.add_argument("--folder", type=Path, default=None, help="where the features files go (default: a "
                                                                   "temporary folder under /tmp, removed at the end)")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the features files")
    parser.add_argument("--reuse-files", action="store_true",
                        help="take the full part's files from --folder when they are there (an earlier --keep run)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # the pipeline's warnings on synthetic data (pca-loss, small sample)
    part_bootstrap = args.bootstrap if args.part_bootstrap is None else args.part_bootstrap
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; load {load()}", flush=True)

    profile = None
    if not args.skip_profile:
        started = time.perf_counter()
        profile = profile_layer(args.n, args.width, args.bootstrap, args.profile_layers)
        print(f"profile: one layer at {args.n} x {args.width} (float16 features, 1 thread, bootstrap {args.bootstrap}); "
              f"seed dims {profile['seed_dims']} ({profile['seed_dims_cpu_s_per_layer']:.2f} CPU-s a layer to find); "
              f"{time.perf_counter() - started:.0f} s wall; load {load()}", flush=True)
        for recipe, row in profile["recipes"].items():
            stages = ", ".join(f"{name} {value:.2f}" for name, value in row["stages_s"].items())
            pieces = ", ".join(f"{name} {value:.3f}" for name, value in row["pieces"].items())
            print(f"  {recipe:8s} dims {row['dims']}: {row['cpu_s']:.2f} CPU-s a layer; under cProfile "
                  f"{row['profiled_s']:.2f} CPU-s, stages (cumulative): {stages}; one source alone: {pieces}; the "
                  f"recipe's Gaussianization plan (all layers, once a part) {row['plan_cpu_s']:.2f} CPU-s", flush=True)
            print("           most time (own CPU-s): " + ", ".join(f"{name} {value:.2f}" for value, name in row["top"]))
        scale = 33 / profile["layers"]  # the plans were made on the profile's layers; a part has 33
        print_projection({recipe: row["cpu_s"] for recipe, row in profile["recipes"].items()},
                         scale * sum(row["plan_cpu_s"] for row in profile["recipes"].values())
                         + profile["seed_dims_cpu_s_per_layer"] * 33, "profiled layers; planning scaled to 33 layers")
    if args.profile_only:
        return 0

    root = args.folder or Path(tempfile.mkdtemp(prefix="pidflow-bench-rw-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"features files under {root}; disk: {shutil.disk_usage(root).free / 1e9:.0f} GB free", flush=True)
    failures = 0
    stack = Stack(args.workers, root)
    try:
        if not args.skip_full:
            failures += full_part(args, root, part_bootstrap, stack)
        if not args.skip_small:
            failures += small_study(args, root, part_bootstrap, stack)
    finally:
        stack.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; load {load()}")
    return 1 if failures else 0


def full_part(args, root: Path, bootstrap: int, stack: Stack) -> int:
    folder = root / "full"
    where = folder / "model-a" / TASK
    if args.reuse_files and (where / "baseline.safetensors").is_file():
        made = {"files": len(list(where.iterdir())), "seconds": 0.0,
                "bytes_on_disk": sum(path.stat().st_blocks * 512 for path in where.iterdir())}
    else:
        made = write_part(folder, "model-a", TASK, args.n, args.width, args.layers, seed=1)
    print(f"full part: {made['files']} files ({args.layers} x {args.n} x {args.width} float16), "
          f"{made['bytes_on_disk'] / 1e9:.1f} GB on disk, written in {made['seconds']:.0f} s; load {load()}", flush=True)
    request = {"models": ["model-a"], "tasks": [TASK], "n_questions": args.n, "bootstrap": bootstrap,
               "sweep": {"edges": ["image->question"], "k": 9}, "seed_cut": True, "recipes": ["pidflow", "seed"]}
    before = stack.processes()
    report, plans, wall = run_study_on_workers({**request, "features_dir": str(folder)}, label="full part")
    after = stack.processes()
    timing, plan = report["timing"], plans[0]
    run, whole = skipped_share(plans, 2)
    units_cpu = timing["analysis_cpu_s"]
    worker_cpu = sum(after[name]["cpu_s"] - before[name]["cpu_s"] for name in after)
    print(f"full part: {len(plan['keys'])} runs x 2 recipes x {args.layers} layers = {whole} layer analyses; {run} run, "
          f"{whole - run} ({1 - run / whole:.1%}) taken from the baseline as identical; {timing['analysis_units']} "
          f"units on the cpu queue; wall {wall:.0f} s; load {load()}")
    print(f"  CPU: analyses {units_cpu:.0f} CPU-s = {units_cpu / run:.2f} CPU-s per layer analysis (bootstrap "
          f"{bootstrap}); plan {timing['plan_s']:.0f} worker-s (seed dims, Gaussianization plans, comparing every "
          f"knockout run with the baseline); worker processes {worker_cpu:.0f} CPU-s in all")
    for name, row in after.items():
        print(f"  {name}: peak RSS {row['peak_rss_mib']:.0f} MiB, {row['cpu_s'] - before[name]['cpu_s']:.0f} CPU-s")
    print(f"  seed dims {plan['seed_dims']['dims']}" + (f" (capped from {plan['seed_dims']['capped_from']})"
                                                        if plan["seed_dims"].get("capped_from") else ""))
    names = [run_["name"] for run_ in plan["runs"]]
    last = args.layers - 1
    samples = [(recipe, name, layer) for recipe in ("pidflow", "seed")
               for name, layer in (("baseline", 0), ("baseline", last // 2), ("seed-cut", last),
                                   (names[len(names) // 2], last), (names[-1], 1))]
    started = time.process_time()
    checked = check_sample(folder, "model-a", request, report, plan, samples)
    print(f"  equal to the same analyses run one by one: {checked} layer entries checked "
          f"({', '.join(f'{r} {n} layer {at}' for r, n, at in samples)}), all equal; "
          f"{time.process_time() - started:.0f} CPU-s; load {load()}", flush=True)
    per_layer = units_cpu / run
    print_projection({"pidflow": per_layer, "seed": per_layer}, timing["plan_s"],
                     "this part's measured CPU-s per layer analysis, both recipes as mixed in the part")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def small_study(args, root: Path, bootstrap: int, stack: Stack) -> int:
    from pidcore.study.run import run_study

    folder = root / "small"
    models, tasks = ["model-a", "model-b"], ["shape", "color"]
    started = time.perf_counter()
    for number, model in enumerate(models):
        for offset, task in enumerate(tasks):
            write_part(folder, model, task, args.small_n, args.width, args.small_layers, seed=10 + 2 * number + offset)
    print(f"small study: 2 models x 2 tasks at n = {args.small_n} ({args.small_layers} x {args.width} float16) written "
          f"in {time.perf_counter() - started:.0f} s; load {load()}", flush=True)
    request = {"models": models, "tasks": tasks, "n_questions": args.small_n, "bootstrap": bootstrap,
               "sweep": {"edges": ["image->question"], "k": 9}, "seed_cut": True, "recipes": ["pidflow", "seed"]}
    before = stack.processes()
    report, plans, wall = run_study_on_workers({**request, "features_dir": str(folder)}, label="small study")
    after = stack.processes()
    run, whole = skipped_share(plans, 2)
    timing = report["timing"]
    print(f"small study on the workers: wall {wall:.0f} s; {timing['analysis_units']} units, {run} layer analyses of "
          f"{whole} ({1 - run / whole:.1%} taken from the baseline), {timing['analysis_cpu_s']:.0f} CPU-s = "
          f"{timing['analysis_cpu_s'] / run:.3f} CPU-s per layer analysis; plans {timing['plan_s']:.0f} worker-s; "
          f"load {load()}")
    for name, row in after.items():
        print(f"  {name}: peak RSS {row['peak_rss_mib']:.0f} MiB, {row['cpu_s'] - before[name]['cpu_s']:.0f} CPU-s")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    started = time.process_time()
    with threadpool_limits(limits=1):  # as the workers (OMP_NUM_THREADS=1): BLAS rounds alike
        reference = json.loads(json.dumps(run_study(dict(request), features_dir=folder)))
    differ = same_report(report, reference)
    print(f"  run_study in this process: {time.process_time() - started:.0f} CPU-s; report sections that differ: "
          f"{differ or 'none'}; load {load()}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
