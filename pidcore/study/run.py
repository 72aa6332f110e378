"""A study: the seed paper's whole experiment as one request (models x tasks x runs x recipes) -> one report.

Runs are the baseline plus knockouts: fixed windows, the seed's image->question cut (every decoder layer)
and a sweep of k-layer windows centred on every decoder layer (Zhang et al.'s protocol, k = 9, clipped at
the ends). Each (model, task) is extracted once, all its runs together (pidcore.extract.multirun), and that
extraction is reused by every recipe: "pidflow" (the request's dims, BROJA, the chosen Gaussianization) and
"seed" (the seed-faithful recipe: PCA keeping 95% of the variance, MMI). Every analysis is an ordinary
AnalysisRequest, so each part of the report can be checked against `run_analysis` of that request.

All information quantities are in bits; shares are fractions of the layer's total I(X_v, X_l; Y).
The report (`pidflow.study/1`) is described in docs/study.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from pidcore import __version__
from pidcore.extract.edges import EDGES
from pidcore.pipeline.analysis import AnalysisRequest, _adapter, _is_int, analyze_layers
from pidcore.pipeline.effects import add_intervals, knockout_effects
from pidcore.study.checks import target_clusters

SCHEMA = "pidflow.study/1"
TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")
RECIPES = {
    "pidflow": "pidflow's default: the request's PCA dims, Gaussian BROJA, the chosen Gaussianization",
    "seed": "seed-faithful: PCA keeping 95% of the raw features' variance (the most components any layer needs, "
            "capped at what the questions support), then Gaussianization of the kept components, MMI",
}
SEED_CUT_EDGES = ("image->question",)
DEFAULT_SWEEP = {"edges": ["image->question"], "k": 9}
EFFECT_KEYS = ("trapped_unique_vision", "compensatory_synergy", "information_cost", "answer_probability_change",
               "answer_probability_change_pct", "accuracy_change")


@dataclass(frozen=True)
class StudyRequest:
    """What to study; the JSON body of POST /api/v1/studies. `knockouts`: fixed windows
    [{"edges": [...], "layers": [first, last]}]; `seed_cut`: image->question in every decoder layer;
    `sweep`: {"edges": [...], "k": 9} (a window centred on every decoder layer) or None."""

    models: tuple[str, ...] = ("demo",)
    dataset: str = "easy-vqa"
    tasks: tuple[str, ...] = ("color",)
    split: str = "test"
    n_questions: int = 400
    correct_only: bool = False
    language_pooling: str = "mean"
    target: str = "logprobs"
    knockouts: tuple = field(default=(), hash=False)
    seed_cut: bool = True
    sweep: dict | None = field(default_factory=lambda: dict(DEFAULT_SWEEP), hash=False)
    recipes: tuple[str, ...] = ("pidflow", "seed")
    dims: tuple[int, int, int] = (8, 8, 4)
    gaussianize: str = "auto"  # as AnalysisRequest: auto, none, copula, flow (true/false -> auto/none)
    estimator: str = AnalysisRequest.estimator  # corrected (bias-corrected parts) or plugin
    bootstrap: int = AnalysisRequest.bootstrap  # rounds of the 95% intervals (0: none)
    knockout_target: str = AnalysisRequest.knockout_target  # knockout runs analysed against the baseline's Y
    seed_variance: float = 0.95
    seed: int = 0
    question_ids: dict | None = field(default=None, hash=False)  # task -> question ids (e.g. Zhang et al.'s)

    @classmethod
    def from_dict(cls, data: dict) -> StudyRequest:
        """Validate and build; ValueError listing every problem found."""
        if not isinstance(data, dict):
            raise ValueError(f"a study request must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        problems = [f"unknown field {name!r}" for name in data if name not in known]
        values = {**_defaults(), **{k: v for k, v in data.items() if k in known}}
        problems += _problems(values)
        if problems:
            raise ValueError("invalid study request: " + "; ".join(problems))
        for name in ("models", "tasks", "recipes"):
            values[name] = tuple(dict.fromkeys(values[name]))
        values["dims"] = tuple(values["dims"])
        if values["question_ids"] is not None:
            values["question_ids"] = {task: [str(q) for q in ids] for task, ids in values["question_ids"].items()}
        if isinstance(values["gaussianize"], bool):
            values["gaussianize"] = "auto" if values["gaussianize"] else "none"
        values["knockouts"] = tuple({"edges": list(dict.fromkeys(k["edges"])), "layers": list(k["layers"])}
                                    for k in values["knockouts"])
        if values["sweep"] is not None:
            values["sweep"] = {"edges": list(dict.fromkeys(values["sweep"]["edges"])), "k": values["sweep"]["k"]}
        return cls(**values)

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("models", "tasks", "recipes", "dims", "knockouts"):
            data[name] = list(data[name])
        return data

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _defaults() -> dict:
    return StudyRequest().to_dict()


def default_request(**overrides) -> StudyRequest:
    """The default study (with the k = 9 image->question sweep), with fields replaced."""
    return StudyRequest.from_dict({**_defaults(), **overrides})


def _names(value) -> bool:
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(v, str) and v.strip() for v in value))


def _window_problems(label: str, spec, need_layers: bool) -> list[str]:
    keys = {"edges", "layers"} if need_layers else {"edges", "k"}
    if not isinstance(spec, dict) or set(spec) != keys:
        return [f"{label} must be {{{', '.join(sorted(keys))}}}"]
    problems = []
    edges = spec["edges"]
    if not isinstance(edges, list | tuple) or not edges or not all(e in EDGES for e in edges):
        problems.append(f"{label} edges must be a non-empty list of {', '.join(EDGES)} (got {edges!r})")
    if need_layers:
        layers = spec["layers"]
        if (not isinstance(layers, list | tuple) or len(layers) != 2 or not all(_is_int(x) for x in layers)
                or layers[0] < 0 or layers[1] < layers[0]):
            problems.append(f"{label} layers must be [first, last] with 0 <= first <= last (got {layers!r})")
    elif not _is_int(spec["k"]) or spec["k"] < 1:
        problems.append(f"{label} k must be an integer >= 1 (got {spec['k']!r})")
    return problems


def _problems(v: dict) -> list[str]:
    problems = []
    if not _names(v["models"]):
        problems.append("models must be a non-empty list of model names")
    if not _names(v["tasks"]):
        problems.append("tasks must be a non-empty list of task names")
    if not isinstance(v["recipes"], list | tuple) or not v["recipes"] or not all(r in RECIPES for r in v["recipes"]):
        problems.append(f"recipes must be a non-empty list of {', '.join(RECIPES)} (got {v['recipes']!r})")
    if not isinstance(v["knockouts"], list | tuple):
        problems.append("knockouts must be a list of {edges, layers} windows")
    else:
        for index, spec in enumerate(v["knockouts"]):
            problems += _window_problems(f"knockouts[{index}]", spec, need_layers=True)
    if v["sweep"] is not None:
        problems += _window_problems("sweep", v["sweep"], need_layers=False)
    if not isinstance(v["seed_cut"], bool):
        problems.append("seed_cut must be true or false")
    ids = v["question_ids"]
    if ids is not None and (not isinstance(ids, dict) or not all(
            isinstance(task, str) and isinstance(values, list | tuple) and values
            and all(isinstance(q, str | int) and not isinstance(q, bool) for q in values) for task, values in ids.items())):
        problems.append("question_ids must be {task: [question ids, ...]} with a non-empty list per task")
    elif ids is not None and _names(v["tasks"]):
        missing = [task for task in ids if task not in v["tasks"]]
        if missing:
            problems.append(f"question_ids names task(s) not in tasks: {', '.join(missing)}")
    variance = v["seed_variance"]
    if isinstance(variance, bool) or not isinstance(variance, int | float) or not 0 < variance <= 1:
        problems.append(f"seed_variance must be a number in (0, 1] (got {variance!r})")
    from pidcore.data import DATASETS

    info = DATASETS.get(v["dataset"])
    if info is not None and _names(v["tasks"]):
        unknown = [task for task in v["tasks"] if task not in info.task_names]
        if unknown:
            problems.append(f"unknown task(s) {', '.join(map(repr, unknown))} for {v['dataset']}; valid tasks: "
                            f"{', '.join(info.task_names)}")
    elif isinstance(v["dataset"], str) and info is None:
        problems.append(f"unknown dataset {v['dataset']!r}; valid datasets: {', '.join(DATASETS)}")
    # every field an analysis shares is checked by AnalysisRequest itself
    analysis = {name: v[name] for name in ("dataset", "split", "n_questions", "correct_only", "language_pooling",
                                           "target", "dims", "gaussianize", "bootstrap", "seed", "estimator",
                                           "knockout_target")}
    analysis["tasks"] = list(v["tasks"]) if _names(v["tasks"]) else ["?"]
    try:
        AnalysisRequest.from_dict(analysis)
    except ValueError as error:
        problems += str(error).removeprefix("invalid analysis request: ").split("; ")
    return problems


# -- runs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One run of a (model, task): the baseline or a knockout {"edges", "layers"}; `centre` for a sweep."""

    name: str
    kind: str  # baseline | fixed | seed_cut | sweep
    knockout: dict | None = None
    centre: int | None = None

    @property
    def key(self) -> str:
        """Runs with the same knockout share one extraction and one analysis."""
        if self.knockout is None:
            return "baseline"
        return f"{'+'.join(sorted(self.knockout['edges']))}@{self.knockout['layers'][0]}-{self.knockout['layers'][1]}"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "knockout": self.knockout, "centre": self.centre,
                "key": self.key}


def sweep_windows(num_layers: int, k: int) -> list[tuple[int, int, int]]:
    """(centre, first, last) for a k-layer window centred on every decoder layer, clipped at the ends
    (an even k reaches one layer further after the centre than before it)."""
    if num_layers < 1 or k < 1:
        raise ValueError(f"need num_layers >= 1 and k >= 1, got {num_layers} and {k}")
    before, after = (k - 1) // 2, k // 2
    return [(c, max(0, c - before), min(num_layers - 1, c + after)) for c in range(num_layers)]


def sweep_k(k: int, num_layers: int) -> int:
    """The sweep window a model admits: never wider than a third of its decoder layers (at least 1), so the
    windows centred on different layers differ (a 9-layer window on a 6-layer model covered the whole depth
    from four centres, the same run four times)."""
    return max(1, min(int(k), num_layers // 3))


def sweep_used(request: StudyRequest, num_layers: int) -> dict | None:
    """What the sweep used on a model of `num_layers` decoder layers: {k_requested, k_used, reason}."""
    if request.sweep is None:
        return None
    asked, used = int(request.sweep["k"]), sweep_k(request.sweep["k"], num_layers)
    reason = ("as requested" if used == asked else
              f"{asked} layers asked; a window is at most a third of the model's {num_layers} decoder layers")
    return {"k_requested": asked, "k_used": used, "num_layers": num_layers, "reason": reason}


def plan_runs(request: StudyRequest, num_layers: int) -> list[Run]:
    """The runs of one (model, task) for a model with `num_layers` decoder layers; ValueError for a fixed
    window outside the model. The sweep's window is `sweep_k` layers wide (at most a third of the decoder)."""
    runs = [Run("baseline", "baseline")]
    for spec in request.knockouts:
        first, last = spec["layers"]
        if last >= num_layers:
            raise ValueError(f"knockout window {spec['layers']} outside the model's decoder layers 0..{num_layers - 1}")
        runs.append(Run(f"{'+'.join(spec['edges'])}@{first}-{last}", "fixed",
                        {"edges": list(spec["edges"]), "layers": [first, last]}))
    if request.seed_cut:
        runs.append(Run("seed-cut", "seed_cut", {"edges": list(SEED_CUT_EDGES), "layers": [0, num_layers - 1]}))
    if request.sweep is not None:  # at most a third of the decoder; a window already swept is not repeated
        seen = set()
        for centre, first, last in sweep_windows(num_layers, sweep_k(request.sweep["k"], num_layers)):
            if (first, last) in seen:
                continue
            seen.add((first, last))
            runs.append(Run(f"sweep@{centre}", "sweep", {"edges": list(request.sweep["edges"]),
                                                         "layers": [first, last]}, centre))
    return runs


def unique_runs(runs: list[Run]) -> dict[str, dict | None]:
    """key -> knockout for the distinct knockouts among `runs` (the baseline first)."""
    return {run.key: run.knockout for run in runs}


# -- recipes ----------------------------------------------------------------------------------------------

def components_for_variance(x: np.ndarray, variance: float) -> int:
    """The fewest principal components of the rows of `x` keeping `variance` of its total variance."""
    from pidcore.reduce.pca import PCAReducer

    return PCAReducer(n_components=None, variance=variance).fit(x).n_components_


def seed_dims(baseline, variance: float = 0.95, bootstrap: int = 0, folds: int = 2) -> dict:
    """PCA sizes of the seed-faithful recipe from a run's Features: per source the most components any
    layer needs to keep `variance` of the variance of its raw features (so every layer keeps at least that),
    and the target's. Where those sizes are more than `baseline.n` questions support (with `bootstrap` rounds
    and `folds`), they are shrunk together until they fit, and ``warning`` says so ("capped_from" the counts);
    the part is analysed at the capped sizes rather than failing."""
    from pidcore.pipeline.validation import _smaller_dims, rows_needed

    vision = [components_for_variance(baseline.vision[layer], variance) for layer in range(baseline.num_layers)]
    language = [components_for_variance(baseline.language[layer], variance) for layer in range(baseline.num_layers)]
    target = components_for_variance(baseline.target, variance)
    dims = [max(vision), max(language), target]
    out = {"dims": dims, "vision_per_layer": vision, "language_per_layer": language, "variance": variance}
    per_fold = baseline.n // folds
    if rows_needed(sum(dims), bootstrap) > per_fold:
        capped = _smaller_dims(dims, per_fold, bootstrap) or (1, 1, 1)
        out.update(dims=list(capped), capped_from=dims,
                   warning=(f"keeping {variance:.0%} of the variance needs dims {tuple(dims)}, more than {baseline.n} "
                            f"questions support with {bootstrap} bootstrap rounds; the seed recipe used {tuple(capped)}"))
    return out


def analysis_request(request: StudyRequest, model: str, task: str, recipe: str, knockout: dict | None,
                     dims=None) -> AnalysisRequest:
    """The single analysis a part of the study is (its numbers equal run_analysis of it)."""
    base = AnalysisRequest(
        model=model, dataset=request.dataset, tasks=(task,), split=request.split, n_questions=request.n_questions,
        correct_only=request.correct_only, language_pooling=request.language_pooling, target=request.target,
        measure="broja", dims=tuple(request.dims), gaussianize=request.gaussianize, bootstrap=request.bootstrap,
        estimator=request.estimator, knockout_target=request.knockout_target,
        knockout=None if knockout is None else {"edges": list(knockout["edges"]), "layers": list(knockout["layers"])},
        seed=request.seed)
    if recipe == "seed":
        if dims is None:
            raise ValueError("the seed recipe needs dims from seed_dims()")
        # the seed's order: PCA of the raw features (its 95%-variance count), then Gaussianize the components
        base = replace(base, measure="mmi", dims=tuple(int(d) for d in dims), reduce_first=True)
    return base


# -- extraction and analysis of one (model, task) -------------------------------------------------------

def part_questions(request: StudyRequest, task: str) -> list:
    """The questions of one task of the study, in the order every run extracts them (see study_questions)."""
    items, _ = study_questions(request, task)
    if len(items) < 2:
        raise ValueError(f"only {len(items)} question(s) found for {request.dataset} task {task!r}")
    return items


def extract_questions(request: StudyRequest, model: str, task: str, start: int = 0, stop: int | None = None,
                      progress=None, batch_size: int | str | None = None, with_model: bool = False,
                      spill_dir=None, spill_dtype: str = "float32"):
    """key -> Features of every distinct run of one (model, task) for its questions [start, stop), all runs
    together (prefix reuse), before correct_only. `batch_size`: questions per forward pass or "auto"; None:
    PIDFLOW_BATCH_SIZE (`pidflow study --batch-size`), else 8. A slice that starts at a multiple of a fixed
    batch size holds the same batches as the whole (bit-equal once merged, for models batched in question
    order); "auto" sizes each slice's batches on its own, so shards then match the whole only to float
    rounding. `with_model`: (features, the model's describe()) so that finish_part needs no model.
    `spill_dir`: every run's pooled states go to files there batch by batch (pidcore.extract.multirun,
    SpilledRun) and are read back a layer at a time: memory independent of the number of runs."""
    from pidcore.data import answer_set
    from pidcore.extract import Knockout
    from pidcore.extract.multirun import extract_runs

    adapter = _adapter(model)
    runs = plan_runs(request, adapter.num_layers)
    items = part_questions(request, task)[start:stop]
    knockouts = {key: None if spec is None else Knockout(**spec) for key, spec in unique_runs(runs).items()}
    features = extract_runs(adapter, items, answers=answer_set(request.dataset), runs=knockouts,
                            language_pooling=request.language_pooling, target=request.target,
                            batch_size=batch_size, progress=progress, spill_dir=spill_dir,
                            spill_dtype=spill_dtype)
    return (features, adapter.describe()) if with_model else features


def select_part(request: StudyRequest, features: dict, keep=None) -> tuple[dict, list[int] | None]:
    """(features, keep) of a part's extracted runs as its analyses take them: with correct_only only the
    questions the baseline answers correctly (`keep`, given or found), and with knockout_target "baseline"
    one Y (the baseline's) for every run. Layers are not read (file-backed runs stay lazy)."""
    if request.correct_only:
        if keep is None:
            keep = [int(i) for i in np.flatnonzero(features["baseline"].correct)]
        features = {key: value.subset(np.asarray(keep, dtype=int)) for key, value in features.items()}
    if request.knockout_target == "baseline":  # one Y for every run: deltas before a window are exactly 0
        from pidcore.pipeline.analysis import with_baseline_target

        features = {key: value if key == "baseline" else with_baseline_target(value, features["baseline"])
                    for key, value in features.items()}
    return features, keep


def finish_part(request: StudyRequest, model: str, task: str, features: dict, model_info: dict | None = None,
                runs: list | None = None, questions_listed: bool = True) -> dict:
    """{"runs": [Run], "features": key -> Features, "model": describe(), "n_asked", "n_correct" (answered
    correctly when asked, as pidcore.data.correct.count_correct counts), "n_listed", "seed_dims", "keep"}
    from the extracted features of all the part's questions (one extraction, or merged shards): the
    correct_only selection (by the baseline's answers), one Y for every run, the seed recipe's dims.
    `model_info`: the model's describe() where the extraction ran (no model is loaded here then: a CPU
    worker plans a part a GPU worker extracted); its decoder layers are the features' layers - 1."""
    if model_info is None:
        adapter = _adapter(model)
        model_info, num_layers = adapter.describe(), adapter.num_layers
    else:
        num_layers = features["baseline"].num_layers - 1
    runs = plan_runs(request, num_layers) if runs is None else runs
    n_asked, n_correct = int(features["baseline"].n), int(np.sum(features["baseline"].correct))
    if request.correct_only and int(n_correct) < 2:
        raise ValueError(f"correct_only: {model} answers only {n_correct} of {n_asked} {task} questions correctly")
    features, keep = select_part(request, features)
    part = {"runs": runs, "features": features, "model": model_info, "n_asked": n_asked,
            "n_correct": n_correct, "n_listed": study_questions(request, task)[1] if questions_listed else None,
            "sweep": sweep_used(request, num_layers), "keep": keep,
            "target_clusters": target_clusters(features["baseline"])}
    if "seed" in request.recipes:
        part["seed_dims"] = seed_dims(features["baseline"], request.seed_variance, request.bootstrap)
    return part


# -- a part's analyses as independent units (the workers' cpu queue) ------------------------------------

def plan_part(request: StudyRequest, model: str, task: str, part: dict, layer_batch: int = 8) -> dict:
    """A JSON-ready plan of every analysis of a finished part (finish_part), cut into units (recipe, run key,
    layers) of at most `layer_batch` layers that any worker can run alone (analyse_unit) and that
    assemble_part puts together: the same numbers as analyse_part. Per recipe one Gaussianization plan from
    the part's baseline; a knockout run's units cover only the layers that differ from the baseline's (the
    others take the baseline's entries exactly)."""
    from pidcore.pipeline.analysis import differing_layers, gaussianization_plan

    features = part["features"]
    keys = list(unique_runs(part["runs"]))
    num_layers = features["baseline"].num_layers
    differ = {key: list(range(num_layers)) if key == "baseline" else differing_layers(features["baseline"], features[key])
              for key in keys}
    dims = (part.get("seed_dims") or {}).get("dims")
    plans = {recipe: gaussianization_plan(features["baseline"],
                                          analysis_request(request, model, task, recipe, None, dims)).to_dict()
             for recipe in request.recipes}
    step = max(1, int(layer_batch))
    units = [[recipe, key, layers[i:i + step]] for recipe in request.recipes for key in keys
             for layers in [differ[key]] for i in range(0, len(layers), step)]
    return {"runs": [run.to_dict() for run in part["runs"]], "keys": keys, "keep": part.get("keep"),
            "n_asked": part["n_asked"], "n_correct": part["n_correct"], "n_listed": part.get("n_listed"),
            "sweep": part.get("sweep"), "seed_dims": part.get("seed_dims"), "model": part["model"],
            "target_clusters": part.get("target_clusters"), "gaussianization": plans, "differ": differ, "units": units}


def _unit_analysis(request: StudyRequest, model: str, task: str, plan: dict, recipe: str, key: str) -> AnalysisRequest:
    runs = {run["key"]: run["knockout"] for run in plan["runs"]}
    return analysis_request(request, model, task, recipe, runs[key], (plan.get("seed_dims") or {}).get("dims"))


def analyse_unit(request: StudyRequest, model: str, task: str, plan: dict, features: dict, unit: int,
                 progress=None) -> list[dict]:
    """Layer entries (without pointwise terms) of unit `unit` of a part's plan (plan_part); `features`: key ->
    the part's selected Features (select_part with the plan's `keep`), read lazily: only the unit's layers."""
    recipe, key, layers = plan["units"][unit]
    analysis = _unit_analysis(request, model, task, plan, recipe, key)
    entries = analyze_layers(features[key], analysis, layers=layers, progress=progress,
                             plan=plan["gaussianization"][recipe])
    return _strip(entries)


def assemble_part(request: StudyRequest, model: str, task: str, plan: dict, features: dict,
                  unit_entries: list[list[dict]]) -> list[dict]:
    """The part's records (as analyse_part gives them) from the entries of every unit of its plan, in the
    plan's order: a knockout run's layers that equal the baseline's carry the baseline's entries exactly
    (as pidcore.pipeline.analysis.reuse_identical_layers)."""
    by_run: dict[tuple[str, str], list[dict]] = {}
    for (recipe, key, _), entries in zip(plan["units"], unit_entries, strict=True):
        by_run.setdefault((recipe, key), []).extend(entries)
    records = []
    ordered = sorted([(recipe, key) for recipe in request.recipes for key in plan["keys"]],
                     key=lambda item: item[1] != "baseline")
    for recipe, key in ordered:
        entries = by_run.get((recipe, key), [])
        if key != "baseline":
            differ = set(plan["differ"][key])
            base = {entry["layer"]: entry for entry in by_run[(recipe, "baseline")]}
            analysed = {entry["layer"]: entry for entry in entries}
            entries = [{**base[layer], "reused_from_baseline": True} if layer not in differ and layer in base
                       else analysed[layer] for layer in sorted(set(analysed) | (set(base) - differ))]
        analysis = _unit_analysis(request, model, task, plan, recipe, key)
        records.append(analysis_record(model, task, recipe, key, analysis, features[key], entries))
    runs = [Run(run["name"], run["kind"], run["knockout"], run["centre"]) for run in plan["runs"]]
    part = {"runs": runs, "features": features, "model": plan["model"], **{name: plan.get(name) for name in (
        "n_asked", "n_correct", "n_listed", "seed_dims", "sweep", "target_clusters")}}
    records.append(part_record(model, task, part))
    return records


def extract_part(request: StudyRequest, model: str, task: str, progress=None,
                 batch_size: int | str | None = None) -> dict:
    """finish_part of one extraction of all the (model, task)'s questions and runs (prefix reuse)."""
    features = extract_questions(request, model, task, progress=progress, batch_size=batch_size)
    return finish_part(request, model, task, features)


# -- parts from features files (bring your own activations) ---------------------------------------------

FEATURE_SUFFIXES = (".npz", ".safetensors", ".pt")


def features_part(request: StudyRequest, model: str, task: str, folder) -> dict:
    """finish_part of a part whose runs come from features files (docs/features-format.md) instead of an
    extraction: every file in `<folder>/<model>/<task>/` holds the baseline's arrays and, optionally, one
    knocked-out run (`knockout.*` with `meta.knockout`); the files must hold the same questions. A run whose
    window is one the request plans (plan_runs on the files' depth: the seed cut, a sweep window, a fixed
    window) takes that run's name and kind; any other window is a fixed run. No model is loaded."""
    from pathlib import Path

    from pidcore.features.files import read_features

    where = Path(folder).expanduser() / model / task
    files = sorted(path for path in where.glob("*") if path.suffix.lower() in FEATURE_SUFFIXES) \
        if where.is_dir() else []
    if not files:
        raise ValueError(f"no features files (.npz, .safetensors, .pt) in {where} for part {model} · {task}")
    features, names = {}, {}
    for path in files:
        found = read_features(path, lazy=True)
        baseline = found.features
        if "baseline" not in features:
            features["baseline"] = baseline
        elif list(baseline.qids) != list(features["baseline"].qids):
            raise ValueError(f"{path.name}: its questions differ from {files[0].name}'s (every file of a part must "
                             f"hold the same questions in the same order)")
        if found.knockout is not None:
            window = found.knockout.meta["knockout"]
            key = Run("?", "fixed", {"edges": list(window["edges"]), "layers": list(window["layers"])}).key
            features[key], names[key] = found.knockout, path.name
    num_layers = features["baseline"].num_layers - 1
    planned = {run.key: run for run in plan_runs(request, num_layers) if run.knockout is not None}
    runs = [Run("baseline", "baseline")]
    for key in features:
        if key == "baseline":
            continue
        spec = features[key].meta["knockout"]
        runs.append(planned.get(key) or Run(f"{'+'.join(spec['edges'])}@{spec['layers'][0]}-{spec['layers'][1]}",
                                            "fixed", {"edges": list(spec["edges"]), "layers": list(spec["layers"])}))
    info = {"name": model, "source": "features files", "folder": str(where), "files": [p.name for p in files],
            "num_layers": num_layers, "source_model": features["baseline"].meta.get("source_model")}
    part = finish_part(request, model, task, features, model_info=info, runs=runs, questions_listed=False)
    part["missing_runs"] = [run.name for run in planned.values() if run.key not in features]
    return part


def read_question_ids(path) -> dict[str, list[str]]:
    """Question-id lists from a file: JSON {task: [ids]}; text lines "task,id" / "task id" (# comments);
    a CSV with a question-id column (Zhang et al.'s published lists, e.g.
    GQA_val_correct_question_with_choose_ChooseAttr.csv: the task is a "task" column, else the file name's
    last "_" part); or a folder of such CSVs."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        lists: dict[str, list[str]] = {}
        for child in sorted(path.glob("*.csv")):
            for task, ids in read_question_ids(child).items():
                lists.setdefault(task, []).extend(ids)
        if not lists:
            raise ValueError(f"{path}: no question-id CSV files in this folder")
        return lists
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        return {task: [str(q) for q in ids] for task, ids in data.items()}
    table = _id_table(path, text)
    if table is not None:
        return table
    lists = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part.strip() for part in line.replace(",", " ").split()]
        if len(parts) != 2:
            raise ValueError(f"{path}: line {number}: expected 'task,question_id', got {line!r}")
        lists.setdefault(parts[0], []).append(parts[1])
    if not lists:
        raise ValueError(f"{path}: no question ids")
    return lists


def _id_table(path, text: str) -> dict[str, list[str]] | None:
    """{task: ids} of a CSV whose header names a question-id column (None when the first line is no such
    header)."""
    import csv
    import io

    from pidcore.data.gqa import csv_task

    header = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    columns = {name.strip().lower().replace(" ", "_"): name for name in next(csv.reader([header]), [])}
    id_column = next((columns[c] for c in ("question_id", "questionid", "qid", "qn_id") if c in columns), None)
    if id_column is None:
        return None
    task_column = columns.get("task")
    lists: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        qid = (row.get(id_column) or "").strip()
        if qid:
            task = (row.get(task_column) or "").strip() if task_column else csv_task(path)
            lists.setdefault(task, []).append(qid)
    if not lists:
        raise ValueError(f"{path}: a question-id column {id_column!r} but no ids")
    return lists


def study_questions(request: StudyRequest, task: str) -> tuple[list, int | None]:
    """The task's questions: n_questions sampled (seeded) from its id list when the request has one (ids
    match with or without the dataset prefix, e.g. "201307251" or "gqa.201307251"), else from the task.
    Returns (items, how many listed ids were found, or None without a list)."""
    from pidcore.data import load_questions
    from pidcore.data.sampling import sample

    ids = (request.question_ids or {}).get(task)
    if ids is None:
        return load_questions(request.dataset, [task], split=request.split, n=request.n_questions,
                              seed=request.seed), None
    wanted = {str(q) for q in ids}
    pool = [item for item in load_questions(request.dataset, [task], split=request.split, n=None)
            if item.qid in wanted or item.qid.split(".", 1)[-1] in wanted]
    if not pool:
        raise ValueError(f"none of the {len(wanted)} listed question ids of task {task!r} is in "
                         f"{request.dataset} {request.split}")
    return sample(pool, request.n_questions, request.seed, f"{request.dataset}:{request.split}:{task}:list"), len(pool)


def part_analyses(request: StudyRequest, model: str, task: str, part: dict) -> list[tuple[str, str, AnalysisRequest]]:
    """(recipe, run key, AnalysisRequest) for every analysis of one extracted (model, task)."""
    dims = part.get("seed_dims", {}).get("dims")
    return [(recipe, key, analysis_request(request, model, task, recipe, spec, dims))
            for recipe in request.recipes for key, spec in unique_runs(part["runs"]).items()]


def run_record(features) -> dict:
    """What the report keeps of a run's Features: counts, accuracy, mean p(correct) (and per question, for
    the paired intervals of the answer metrics)."""
    return {"n_questions": int(features.n), "accuracy": float(features.accuracy),
            "mean_p_correct": float(np.mean(features.p_correct)),
            "p_correct": [float(p) for p in features.p_correct], "correct": [bool(c) for c in features.correct]}


def _strip(entries: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key != "pointwise"}
            for entry in sorted(entries, key=lambda entry: entry["layer"])]


# -- the whole study --------------------------------------------------------------------------------------

def _reporter(progress):
    """progress(overall, part, part_fraction, message): None, a callable, or True (two tqdm bars)."""
    if progress is None or progress is False:
        return lambda overall, part, fraction, message: None, lambda: None
    if callable(progress):
        return progress, lambda: None
    from tqdm.auto import tqdm

    from pidcore.pipeline.costs import describe_seconds, eta_seconds

    # the whole bar's time left from the cost-weighted fraction (pidcore.study.progress), not tqdm's rate
    whole = tqdm(total=100, desc="study", unit="%", position=0,
                 bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed} so far{postfix}]")
    current = tqdm(total=100, desc="part", unit="%", position=1,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    first: list = []  # (time, progress) of the first report past 0: the pace counts from there (imports and
                      # the first model load come before it), once 5% more is done

    def report(overall, part, fraction, message):
        whole.n = round(100 * overall)
        now = time.perf_counter()
        if not first and overall > 0:
            first.append((now, overall))
        left = eta_seconds(overall, now - first[0][0], None, since_progress=first[0][1]) if first else None
        whole.set_postfix_str(f"{describe_seconds(left)} left" if left is not None else "", refresh=False)
        whole.refresh()
        current.set_description_str(part, refresh=False)
        current.n = round(100 * fraction)
        current.set_postfix_str(message, refresh=True)

    def close():
        current.close()
        whole.close()
    return report, close


def run_part(request: StudyRequest, model: str, task: str, progress=None, features_dir=None) -> dict:
    """One (model, task) of a study: its extraction (or its features files, `features_dir`: features_part)
    and every recipe's analysis of every distinct run.
    {"records": [...], "model": describe(), "extract_s", "analyze_s"}; progress(fraction, message)."""
    from pidcore.study.progress import extract_share

    say = progress or (lambda fraction, message: None)
    say(0.0, "extracting" if features_dir is None else "reading features files")
    # the part's bar weighted by measured stage costs (pidcore.study.progress): extraction, then the analyses
    share = extract_share(request) if features_dir is None else 0.02
    start = time.perf_counter()
    if features_dir is not None:
        part = features_part(request, model, task, features_dir)
    else:
        part = extract_part(request, model, task, progress=lambda fraction, message: say(share * fraction,
                                                                                          f"extract: {message}"))
    extract_s = time.perf_counter() - start
    done = analyse_part(request, model, task, part,
                        progress=lambda fraction, message: say(share + (1 - share) * fraction, message))
    say(1.0, "done")
    return {**done, "extract_s": extract_s}


def analyse_part(request: StudyRequest, model: str, task: str, part: dict, progress=None) -> dict:
    """Every recipe's analysis of every distinct run of an extracted part (finish_part):
    {"records": [...], "model": describe(), "analyze_s"}; progress(fraction, message)."""
    from pidcore.pipeline.analysis import differing_layers, gaussianization_plan, reuse_identical_layers
    from pidcore.study.progress import analysis_cost

    say = progress or (lambda fraction, message: None)
    # per recipe: its baseline first, whose Gaussianization plan every run of the recipe shares; a knockout
    # run analyses only its layers that differ from the baseline's and takes the others' entries exactly
    analyses = sorted(part_analyses(request, model, task, part), key=lambda item: item[1] != "baseline")
    features = part["features"]
    start = time.perf_counter()
    say(0.0, "planning the Gaussianization")
    plans = {recipe: gaussianization_plan(features["baseline"], analysis)
             for recipe, key, analysis in analyses if key == "baseline"}
    differ = {key: (list(range(features["baseline"].num_layers)) if key == "baseline"
                    else differing_layers(features["baseline"], features[key])) for _, key, _ in analyses}
    # each analysis's share of the bar: its measured cost (layers to analyse, bootstrap, flows per its plan)
    costs = [analysis_cost(len(differ[key]), analysis.bootstrap, plans[recipe].flows, features[key].n) + 1e-3
             for recipe, key, analysis in analyses]
    bounds = np.concatenate([[0.0], np.cumsum(costs) / sum(costs)])
    baselines, records = {}, []
    for number, (recipe, key, analysis) in enumerate(analyses):
        lo, hi = float(bounds[number]), float(bounds[number + 1])

        def step(fraction, message, lo=lo, hi=hi, label=f"{recipe} {key}"):
            say(lo + (hi - lo) * fraction, f"{label}: {message}")
        if key == "baseline":
            entries = analyze_layers(features[key], analysis, progress=step, plan=plans[recipe])
            baselines[recipe] = entries
        else:
            layers = differ[key]
            entries = analyze_layers(features[key], analysis, progress=step, plan=plans[recipe],
                                     layers=layers) if layers else []
            entries = reuse_identical_layers(features["baseline"], features[key], baselines[recipe], entries)
        records.append(analysis_record(model, task, recipe, key, analysis, features[key], entries))
    records.append(part_record(model, task, part))
    return {"records": records, "model": part["model"], "analyze_s": time.perf_counter() - start}


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during run_study: `report` is the report of the parts that finished (None if none had),
    with `interrupted` saying which parts are missing."""

    def __init__(self, report: dict | None, finished: int, total: int):
        super().__init__(f"study interrupted: {finished} of {total} parts finished")
        self.report, self.finished, self.total = report, finished, total


class StudyPartsFailed(RuntimeError):
    """run_study(keep_going=True) where some parts failed: `failures` [{model, task, error}] and `report`,
    the report of the parts that finished (None if none had), with `failed_parts` = failures."""

    def __init__(self, report: dict | None, failures: list[dict], total: int):
        said = "; ".join(f"part {f['model']} · {f['task']} failed: {f['error']}" for f in failures)
        super().__init__(f"{said} ({total - len(failures)} of {total} parts finished)")
        self.report, self.failures, self.total = report, failures, total


def run_study(request: StudyRequest | dict, progress=None, parts=None, keep_going: bool = False,
              features_dir=None) -> dict:
    """Everything in this process: per (model, task) one extraction of all runs, every recipe's analysis
    of every distinct run (run_part), then the report (build_report). `progress`: see _reporter.
    Ctrl-C (KeyboardInterrupt) stops the running part at once and raises StudyInterrupted with the report
    of the parts that finished. `parts`: a store of finished parts (`load(model, task)` -> run_part's
    result or None, `save(model, task, done)`), so that a re-run reuses them (pidflow study keeps one in
    its output folder). `keep_going`: a part that fails does not stop the others; StudyPartsFailed at the
    end says which failed and why, with the report of the rest. `features_dir`: every part's runs from
    features files in <features_dir>/<model>/<task>/ (features_part) instead of extracting them."""
    if isinstance(request, dict):
        request = StudyRequest.from_dict(request)
    report, close = _reporter(progress)
    pairs = [(model, task) for model in request.models for task in request.tasks]
    records, models, started = [], {}, time.perf_counter()
    timing = {"extract_s": 0.0, "analyze_s": 0.0}
    finished, failures = [], []

    def partial() -> dict | None:
        if not finished:
            return None
        final = {key: round(value, 3) for key, value in timing.items()}
        final["wall_s"] = round(time.perf_counter() - started, 3)
        return build_report(request, records, models=models, timing=final)
    try:
        for index, (model, task) in enumerate(pairs):
            def say(fraction, message, index=index, label=f"{model} · {task}"):
                report((index + min(max(fraction, 0.0), 1.0)) / len(pairs), label, fraction, message)
            done = parts.load(model, task) if parts is not None else None
            if done is None:
                try:
                    done = (run_part(request, model, task, progress=say) if features_dir is None else
                            run_part(request, model, task, progress=say, features_dir=features_dir))
                except Exception as error:  # noqa: BLE001 - with keep_going, said at the end
                    if not keep_going:
                        raise
                    failures.append({"model": model, "task": task, "error": f"{type(error).__name__}: {error}"})
                    continue
                if parts is not None:
                    parts.save(model, task, done)
            else:
                say(1.0, "reused from an earlier run")
            records += done["records"]
            models[model] = done["model"]
            timing["extract_s"] += done["extract_s"]
            timing["analyze_s"] += done["analyze_s"]
            finished.append((model, task))
    except KeyboardInterrupt:
        stopped = partial()
        if stopped is not None:
            stopped["interrupted"] = {"finished_parts": [list(pair) for pair in finished],
                                      "missing_parts": [list(pair) for pair in pairs if pair not in finished]}
        raise StudyInterrupted(stopped, len(finished), len(pairs)) from None
    finally:
        close()
    if failures:
        done_report = partial()
        if done_report is not None:
            done_report["failed_parts"] = failures
        raise StudyPartsFailed(done_report, failures, len(pairs))
    return partial() if finished else build_report(request, records, models=models, timing=timing)


def analysis_record(model: str, task: str, recipe: str, key: str, analysis: AnalysisRequest, features,
                    entries: list[dict]) -> dict:
    """A JSON-ready record of one analysis (layer entries without pointwise terms)."""
    return {"type": "analysis", "model": model, "task": task, "recipe": recipe, "key": key,
            "analysis": analysis.to_dict(), **run_record(features), "layers": _strip(entries)}


def part_record(model: str, task: str, part: dict) -> dict:
    """A JSON-ready record of one (model, task): its runs, questions asked, answered correctly and kept
    (all asked, or the correct ones with correct_only), seed dims."""
    return {"type": "part", "model": model, "task": task, "runs": [run.to_dict() for run in part["runs"]],
            "n_asked": part["n_asked"], "n_correct": part["n_correct"],
            "n_kept": int(part["features"]["baseline"].n),
            "n_listed": part.get("n_listed"),
            "seed_dims": part.get("seed_dims"), "model_info": part["model"],
            "sweep": part.get("sweep"), "target_clusters": part.get("target_clusters"),
            **({"missing_runs": part["missing_runs"]} if part.get("missing_runs") else {})}


# -- the report -------------------------------------------------------------------------------------------

def _share(value: float, total: float):
    return value / total if total > 0 else None


def headline(layers: list[dict]) -> dict:
    """Shares of R, U_v, U_l, S at the last layer (fractions of its total, with the terms' intervals divided
    by that total when `ci` is present: the total's own uncertainty is not in them), the layer where U_v
    peaks and the largest synergy share (bits where named so)."""
    last = layers[-1]
    total = float(last["total"])
    ci = last.get("ci") or {}
    shares = {term: _share(float(last[term]), total) for term in TERMS}
    shares_ci = ({term: [lo / total, hi / total] for term, (lo, hi) in ((t, ci[t]) for t in TERMS if t in ci)}
                 if ci and total > 0 else None)
    peak = int(np.argmax([layer["unique_vision"] for layer in layers]))
    synergy = [(_share(layer["synergy"], layer["total"]), layer["layer"]) for layer in layers if layer["total"] > 0]
    best = max(synergy, default=(None, None), key=lambda item: item[0])
    return {"last_layer": int(last["layer"]), "total_bits": total, "terms_bits": {t: float(last[t]) for t in TERMS},
            "terms_ci_bits": {t: list(ci[t]) for t in (*TERMS, "total") if t in ci} or None,
            "shares": shares, "shares_ci": shares_ci,
            "unique_vision_peak_layer": int(layers[peak]["layer"]),
            "unique_vision_peak_bits": float(layers[peak]["unique_vision"]),
            "max_synergy_share": best[0], "max_synergy_layer": best[1]}


def _on_depth(values: list[float], points: int) -> np.ndarray:
    """A layer trajectory resampled onto `points` equally spaced relative depths (0 = embeddings, 1 = last)."""
    values = np.asarray(values, dtype=float)
    if len(values) == points:
        return values
    return np.interp(np.linspace(0, 1, points), np.linspace(0, 1, len(values)), values)


def pearson(a, b) -> float | None:
    """Pearson correlation of two trajectories; None when either is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def correlations(trajectories: dict) -> list[dict]:
    """Cross-model Pearson r of each term's baseline layer trajectory, per task and recipe and model pair;
    models of different depth are compared on relative depth (linear interpolation)."""
    rows = []
    for (task, recipe), by_model in trajectories.items():
        names = list(by_model)
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                points = max(len(by_model[first]), len(by_model[second]))
                row = {"task": task, "recipe": recipe, "models": [first, second]}
                for term in (*TERMS, "total"):
                    a = _on_depth([layer[term] for layer in by_model[first]], points)
                    b = _on_depth([layer[term] for layer in by_model[second]], points)
                    row[term] = pearson(a, b)
                rows.append(row)
    return rows


def build_report(request: StudyRequest, records: list[dict], *, models: dict | None = None,
                 timing: dict | None = None) -> dict:
    """The pidflow.study/1 report from analysis and part records (run_study, or the workers' tasks)."""
    from pidcore.pipeline.layerwise import bootstrap_question_rows

    analyses = {(r["model"], r["task"], r["recipe"], r["key"]): r for r in records if r["type"] == "analysis"}
    parts = {(r["model"], r["task"]): r for r in records if r["type"] == "part"}
    rows, knockouts, series, trajectories = [], [], [], {}
    for (model, task), part in parts.items():
        runs = part["runs"]
        for recipe in request.recipes:
            base = analyses[(model, task, recipe, "baseline")]
            rows.append({"model": model, "task": task, "recipe": recipe, "n_questions": base["n_questions"],
                         "accuracy": base["accuracy"], "measure": base["analysis"]["measure"],
                         "dims": base["analysis"]["dims"], **headline(base["layers"])})
            trajectories.setdefault((task, recipe), {})[model] = base["layers"]
            for run in runs:
                analysis = analyses[(model, task, recipe, run["key"])]
                series.append({"model": model, "task": task, "recipe": recipe, "run": run["name"],
                               "kind": run["kind"], "centre": run["centre"], "knockout": run["knockout"],
                               "n_questions": analysis["n_questions"], "accuracy": analysis["accuracy"],
                               "mean_p_correct": analysis["mean_p_correct"],
                               "layers": [{k: v for k, v in layer.items() if k != "draws"} for layer in analysis["layers"]]})
                if run["knockout"] is None:
                    continue
                answers = {"baseline_p_correct": np.array(base["p_correct"]),
                           "knockout_p_correct": np.array(analysis["p_correct"]),
                           "baseline_correct": np.array(base["correct"]), "knockout_correct": np.array(analysis["correct"])}
                effects = knockout_effects(base["layers"], analysis["layers"], window=run["knockout"]["layers"],
                                           **answers)
                settings = analysis["analysis"]
                resampled = (bootstrap_question_rows(base["n_questions"], settings["bootstrap"], settings["seed"])
                             if settings["bootstrap"] else None)
                effects = add_intervals(effects, base["layers"], analysis["layers"], estimator=settings["estimator"],
                                        rows=resampled, **answers)  # paired intervals, as in a single analysis
                knockouts.append({"model": model, "task": task, "recipe": recipe, "run": run["name"],
                                  "kind": run["kind"], "edges": run["knockout"]["edges"],
                                  "window": run["knockout"]["layers"], "centre": run["centre"],
                                  **{key: effects.get(key) for key in EFFECT_KEYS},
                                  "reached_layers": effects["reached_layers"], "late_layers": effects["late_layers"],
                                  "intervals": effects.get("intervals"),
                                  "per_layer": effects["per_layer"]})
    report = {
        "schema": SCHEMA,
        "request": request.to_dict(),
        "code_version": __version__,
        "recipes": {name: RECIPES[name] for name in request.recipes},
        "models": models or {model: part["model_info"] for (model, _), part in parts.items()},
        "parts": [{key: value for key, value in part.items() if key != "type"} for part in parts.values()],
        "headline": rows,
        "correlations": correlations(trajectories),
        "knockouts": knockouts,
        "series": series,
        "timing": dict(timing or {}),
    }
    from pidcore.study.verdicts import findings

    report["findings"] = findings(report, analyses)  # the seed's claims (a)-(e): verdicts with intervals
    return report
