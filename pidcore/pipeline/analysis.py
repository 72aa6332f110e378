"""One whole analysis: AnalysisRequest -> features -> layer-wise PID -> result document (pidflow.result/1).

Vision is x1 and language is x2; every information quantity is in bits.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import numpy as np

from pidcore import __version__
from pidcore.estimators.estimate import ESTIMATORS
from pidcore.extract.edges import EDGES
from pidcore.gaussianize.latents import MODES as GAUSSIANIZE_MODES
from pidcore.pipeline.effects import add_intervals, knockout_effects
from pidcore.pipeline.validation import MAX_SEED

SCHEMA = "pidflow.result/1"
#: Which target Y a knockout run is analysed against: the baseline run's (the default: layers before the
#: window then have a delta of exactly 0) or the knockout run's own answer distribution.
KNOCKOUT_TARGETS = ("baseline", "own")
_RENAME = {"unique1": "unique_vision", "unique2": "unique_language"}


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse; the JSON body of POST /api/v1/analyses (see docs/architecture.md)."""

    model: str = "demo"
    dataset: str = "easy-vqa"
    tasks: tuple[str, ...] = ("color",)
    split: str = "test"
    n_questions: int = 400
    correct_only: bool = False
    language_pooling: str = "mean"
    target: str = "logprobs"
    measure: str = "broja"
    dims: tuple[int, int, int] = (8, 8, 4)  # 400 questions: < 0.25 bits of small-sample bias
    gaussianize: str = "auto"  # "auto", "none", "copula" or "flow"; old requests' true/false -> auto/none
    estimator: str = "corrected"  # bias-corrected parts; "plugin": the uncorrected plug-in (pidcore.estimators.estimate)
    bootstrap: int = 200  # rounds of the 95% intervals (0: none)
    knockout: dict | None = field(default=None, hash=False)
    knockout_target: str = "baseline"  # the knockout run's target Y: the baseline's ("baseline") or its own ("own")
    seed: int = 0
    reduce_first: bool = False  # PCA of the raw features before the marginal Gaussianization (the seed recipe)

    @classmethod
    def from_dict(cls, data: dict) -> AnalysisRequest:
        """Validate and build; ValueError listing every problem found."""
        if not isinstance(data, dict):
            raise ValueError(f"an analysis request must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        problems = [f"unknown field {name!r}" for name in data if name not in known]
        values = {**asdict(cls()), **{k: v for k, v in data.items() if k in known}}
        problems += _problems(values)
        if problems:
            raise ValueError("invalid analysis request: " + "; ".join(problems))
        values["tasks"] = tuple(values["tasks"])
        if isinstance(values["gaussianize"], bool):  # requests from before the modes
            values["gaussianize"] = "auto" if values["gaussianize"] else "none"
        values["dims"] = tuple(values["dims"])
        if values["knockout"] is not None:
            values["knockout"] = {"edges": list(dict.fromkeys(values["knockout"]["edges"])),
                                  "layers": list(values["knockout"]["layers"])}
        return cls(**values)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tasks"], data["dims"] = list(self.tasks), list(self.dims)
        return data

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the request (stable across runs and processes)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(v: dict) -> list[str]:
    problems = []
    for name in ("model", "dataset", "split"):
        if not isinstance(v[name], str) or not v[name].strip():
            problems.append(f"{name} must be a non-empty string")
    if (not isinstance(v["tasks"], list | tuple) or not v["tasks"]
            or not all(isinstance(t, str) and t for t in v["tasks"])):
        problems.append("tasks must be a non-empty list of task names")
    if not _is_int(v["n_questions"]) or v["n_questions"] < 1:
        problems.append("n_questions must be an integer >= 1")
    for name in ("correct_only", "reduce_first"):
        if not isinstance(v[name], bool):
            problems.append(f"{name} must be true or false")
    if not isinstance(v["gaussianize"], bool) and v["gaussianize"] not in GAUSSIANIZE_MODES:
        problems.append(f"gaussianize must be one of {', '.join(GAUSSIANIZE_MODES)} (or true/false) "
                        f"(got {v['gaussianize']!r})")
    choices = {"language_pooling": ("mean", "last"), "target": ("logprobs", "hidden"), "measure": ("broja", "mmi"),
               "estimator": ESTIMATORS, "knockout_target": KNOCKOUT_TARGETS}
    for name, allowed in choices.items():
        if v[name] not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)} (got {v[name]!r})")
    dims = v["dims"]
    if not isinstance(dims, list | tuple) or len(dims) != 3 or not all(_is_int(d) and d >= 1 for d in dims):
        problems.append("dims must be three positive integers [vision, language, target]")
    if not _is_int(v["bootstrap"]) or v["bootstrap"] < 0:
        problems.append("bootstrap must be an integer >= 0")
    if not _is_int(v["seed"]) or not 0 <= v["seed"] <= MAX_SEED:
        problems.append(f"seed must be an integer from 0 to {MAX_SEED}")
    problems += _knockout_problems(v["knockout"])
    return problems


def _knockout_problems(knockout) -> list[str]:
    if knockout is None:
        return []
    if not isinstance(knockout, dict) or set(knockout) != {"edges", "layers"}:
        return ['knockout must be null or {"edges": [...], "layers": [first, last]}']
    problems = []
    edges, layers = knockout["edges"], knockout["layers"]
    if not isinstance(edges, list | tuple) or not edges or not all(e in EDGES for e in edges):
        problems.append(f"knockout edges must be a non-empty list of {', '.join(EDGES)} (got {edges!r})")
    if (not isinstance(layers, list | tuple) or len(layers) != 2 or not all(_is_int(x) for x in layers)
            or layers[0] < 0 or layers[1] < layers[0]):
        problems.append(f"knockout layers must be [first, last] with 0 <= first <= last (got {layers!r})")
    return problems


# -- progress ---------------------------------------------------------------------------------------------

class _Progress:
    """Maps a step's own fraction onto [start, end] of the whole; True -> tqdm bars inside the steps."""

    def __init__(self, progress, start: float = 0.0, end: float = 1.0):
        self.progress, self.start, self.end = progress, start, end

    def part(self, start: float, end: float) -> _Progress:
        span = self.end - self.start
        return _Progress(self.progress, self.start + span * start, self.start + span * end)

    def callback(self):
        """What extract()/layer loops take: True, None or a (fraction, message) callable."""
        if self.progress is None or self.progress is True or self.progress is False:
            return self.progress
        return lambda fraction, message: self.progress(self.start + (self.end - self.start) * fraction, message)


# -- steps ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _adapter(model: str):
    from pidcore.extract import load_adapter

    return load_adapter(model)


def extract_features(request: AnalysisRequest, progress=None) -> dict:
    """{"baseline": Features, "knockout": Features | None} for the request's questions."""
    from pidcore.data import answer_set, load_questions
    from pidcore.extract import Knockout, extract

    items = load_questions(request.dataset, list(request.tasks), split=request.split, n=request.n_questions,
                           seed=request.seed)
    if len(items) < 2:
        raise ValueError(f"only {len(items)} question(s) found for {request.dataset} {list(request.tasks)}")
    answers = answer_set(request.dataset)
    adapter = _adapter(request.model)
    knockout = Knockout(**request.knockout) if request.knockout else None
    if knockout:
        adapter.check_knockout(knockout)
    from pidcore.pipeline.validation import (
        check_estimable,  # before any model runs: dims and bootstrap against n
    )

    if not request.correct_only:  # (with correct_only the count is known only after the baseline run)
        check_estimable(len(items), tuple(request.dims), tuple(request.dims), folds=2, bootstrap=request.bootstrap,
                        seed=request.seed)
    steps = _Progress(progress)
    options = {"answers": answers, "language_pooling": request.language_pooling, "target": request.target}
    baseline = extract(adapter, items, progress=steps.part(0, 0.5 if knockout else 1).callback(), **options)
    if request.correct_only:
        keep = np.flatnonzero(baseline.correct)
        if len(keep) < 2:
            raise ValueError(f"correct_only: the model answers only {len(keep)} of {len(items)} questions correctly")
        baseline, items = baseline.subset(keep), [items[i] for i in keep]
    knocked = None
    if knockout:
        knocked = extract(adapter, items, knockout=knockout, progress=steps.part(0.5, 1).callback(), **options)
        if request.knockout_target == "baseline":
            knocked = with_baseline_target(knocked, baseline)
    return {"baseline": baseline, "knockout": knocked}


def with_baseline_target(knocked, baseline):
    """The knockout run's features with the baseline run's target Y (same questions, same order); its own
    answers (predicted, p_correct, correct) are kept. With one Y for both runs every layer before the
    knockout window has exactly the same PID in both, so a delta there is exactly 0."""
    if list(knocked.qids) != list(baseline.qids):
        raise ValueError("the knockout and baseline runs must hold the same questions in the same order")
    knocked.meta = {**knocked.meta, "target_from": "baseline"}
    knocked.target = np.array(baseline.target, copy=True)
    return knocked


POINTWISE_DIGITS = 6  # significant digits of per-question terms (bits): far below the estimator's error


def _entry(layer: int, result) -> dict:
    """A JSON-ready layer entry (result names, bits) from one pidcore.pipeline.layerwise.PIDFlowResult. The layer
    values keep full precision; pointwise terms are rounded to POINTWISE_DIGITS significant digits (their
    mean still equals the layer value to ~1e-6 relative), which shrinks the result document by ~40%."""
    pid = {_RENAME.get(k, k): float(v) for k, v in result.pid.as_dict().items()}
    ci = None
    if result.ci:
        ci = {_RENAME.get(k, k): [float(lo), float(hi)] for k, (lo, hi) in result.ci.items()}
    pointwise = [[float(f"{value:.{POINTWISE_DIGITS}g}") for value in row]
                 for row in np.asarray(result.pointwise, dtype=float).tolist()]
    plugin = {_RENAME.get(k, k): float(v) for k, v in result.plugin.as_dict().items()}
    bias = {_RENAME.get(k, k): float(v) for k, v in result.bias.items()}
    entry = {"layer": layer, **pid, "ci": ci, "plugin": plugin, "bias": bias, "estimator": result.estimator,
             "samples_per_covariance": result.samples_per_covariance, "gaussianization": result.gaussianization,
             "pointwise": pointwise}
    if result.draws is not None:  # for paired knockout intervals; dropped from the result document
        entry["draws"] = np.asarray(result.draws, dtype=float).round(9).tolist()
    return entry


def gaussianization_plan(features, request: AnalysisRequest):
    """The request's GaussianizationPlan for a run's features (every layer), made once per analysis and shared
    by its layer batches and its knockout run (pidcore.pipeline.layerwise.gaussianization_plan)."""
    from pidcore.pipeline.layerwise import gaussianization_plan as plan_for

    layers = range(features.num_layers)
    return plan_for([features.vision[layer] for layer in layers], [features.language[layer] for layer in layers],
                    features.target, dims=tuple(request.dims), gaussianize=request.gaussianize,
                    bootstrap=request.bootstrap, seed=request.seed, reduce_first=request.reduce_first)


def analyze_layers(features, request: AnalysisRequest, layers=None, progress=None, plan=None) -> list[dict]:
    """Layer entries {"layer", redundancy, unique_vision, unique_language, synergy, total, ci, pointwise}.

    JSON-ready (pointwise is a list of [R, U_v, U_l, S] per question, bits); `layers` picks pooled layers.
    ``plan``: the analysis's GaussianizationPlan (or its dict; see gaussianization_plan) so that any subset of
    layers gives the numbers of the whole; without one, pidcore.pipeline.layerwise.layerwise makes it from `layers`.
    Warnings: ``warnings`` (their texts) and ``warning_records`` ({"layer", "kind", "message"}) per entry.
    """
    from pidcore.pipeline.layerwise import layerwise

    layers = list(range(features.num_layers)) if layers is None else list(layers)
    bad = [layer for layer in layers if not (_is_int(layer) and 0 <= layer < features.num_layers)]
    if bad:
        raise ValueError(f"layers {bad} outside 0..{features.num_layers - 1}")
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=100, desc=f"PID Flow, {len(layers)} layers", unit="%",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}]")

    def report(fraction: float, message: str) -> None:
        if bar is not None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message, refresh=True)
        elif callable(progress):
            progress(fraction, message)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = layerwise([features.vision[layer] for layer in layers],
                           [features.language[layer] for layer in layers], features.target,
                           dims=tuple(request.dims), gaussianize=request.gaussianize, measure=request.measure,
                           estimator=request.estimator, bootstrap=request.bootstrap, seed=request.seed,
                           progress=report, plan=plan, layer_ids=layers, reduce_first=request.reduce_first)
    if bar is not None:
        bar.close()
    entries = [_entry(layer, layer_result) for layer, layer_result in zip(layers, result.layers, strict=True)]
    plan_record = result.plan.to_dict() if getattr(result, "plan", None) is not None else None
    for entry in entries:
        entry["gaussianization_plan"] = plan_record
    for warning in caught:
        _attach_warning(entries, _warning_record(warning.message))
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return entries


def _warning_record(message) -> dict:
    """{"layer", "kind", "message"} of a caught warning: a pipeline warning carries its layer and kind as
    fields (pidcore.gaussianize.latents.PipelineWarning); any other applies to every layer."""
    from pidcore.gaussianize.latents import PipelineWarning

    if isinstance(message, PipelineWarning):
        return message.to_dict()
    return {"layer": None, "kind": "other", "message": str(message)}


def _attach_warning(entries: list[dict], record: dict) -> None:
    """Add a warning record to the entry of the layer it names, else to every entry."""
    targets = [entry for entry in entries if entry["layer"] == record["layer"]] if record["layer"] is not None else []
    for entry in targets or entries:
        entry.setdefault("warnings", []).append(record["message"])
        entry.setdefault("warning_records", []).append(record)


def _run(features, entries) -> dict:
    """Layers plus accuracy and mean p(gold); null where the features do not know them (a features file
    without predicted answers or gold probabilities: predicted "" and p_correct NaN)."""
    entries = sorted(entries, key=lambda entry: entry["layer"])
    layers = [{key: value for key, value in entry.items() if key not in ("pointwise", "draws", "gaussianization_plan")}
              for entry in entries]
    known = np.asarray(features.predicted) != ""
    p_correct = np.asarray(features.p_correct, dtype=float)
    return {"layers": layers, "accuracy": float(np.mean(features.correct[known])) if known.any() else None,
            "mean_p_correct": float(np.mean(p_correct)) if np.isfinite(p_correct).all() else None}


def _answer(features, index: int) -> dict:
    if str(features.predicted[index]) == "":
        predicted = correct = None
    else:
        predicted, correct = str(features.predicted[index]), bool(features.correct[index])
    p_correct = float(features.p_correct[index])
    return {"predicted": predicted, "p_correct": p_correct if np.isfinite(p_correct) else None, "correct": correct}


def differing_layers(baseline, knocked) -> list[int]:
    """The layers a knockout run must analyse: those whose inputs differ from its baseline's (vision or
    language states, or Y). The others (the layers before the knockout window, when the run uses the
    baseline's Y) take the baseline's entries exactly (reuse_identical_layers): same inputs, same plan, same
    numbers, at no cost."""
    if not np.array_equal(knocked.target, baseline.target):
        return list(range(knocked.num_layers))
    return [layer for layer in range(knocked.num_layers)
            if not (layer < baseline.num_layers and np.array_equal(knocked.vision[layer], baseline.vision[layer])
                    and np.array_equal(knocked.language[layer], baseline.language[layer]))]


def reuse_identical_layers(baseline, knocked, base_layers: list, knock_layers: list) -> list:
    """Knockout layer entries in which every layer whose inputs are bit-identical to the baseline's (same
    vision and language states, same target Y: the layers before the knockout window when the knockout run
    uses the baseline's Y) carries the baseline's entry, so its delta is exactly 0; such layers may be
    missing from ``knock_layers`` (not analysed: differing_layers), and are filled in."""
    differ = set(differing_layers(baseline, knocked))
    by_layer = {entry["layer"]: entry for entry in base_layers}
    analysed = {entry["layer"]: entry for entry in knock_layers}
    out = []
    for layer in sorted(set(analysed) | (set(by_layer) - differ)):
        if layer not in differ and layer in by_layer:
            out.append({**by_layer[layer], "reused_from_baseline": True})
        else:
            out.append(analysed[layer])
    return out


def estimates_statement(request: AnalysisRequest) -> dict:
    """What the numbers of a result are and how good they are, in words (docs/estimators.md has the figures)."""
    corrected = request.estimator == "corrected"
    statement = {
        "estimator": request.estimator,
        "unit": "bits",
        "estimand": ("the PID of the pooled vision and language states and Y, each reduced by PCA (to the request's "
                     "dims) after the Gaussianization recorded in gaussianization_plan"),
        "target": ("Y = the first principal components of the model's answer log-probabilities over the dataset's "
                   "answers" if request.target == "logprobs" else "Y = the final-layer state at the answer position"),
        "method": ("bias-corrected: the exact Wishart expectation removed from each mutual information, the union "
                   "information's bias estimated by simulation; parts can be slightly negative when their truth is 0"
                   if corrected else "plug-in Gaussian estimate: biased upward at small samples (not corrected)"),
        "intervals": None,
    }
    if request.bootstrap:
        statement["intervals"] = (
            f"95% {'basic' if corrected else 'percentile'} bootstrap intervals from {request.bootstrap} resamplings of "
            "the questions; they cover sampling noise given the fitted PCA and Gaussianization (not the refitting "
            "of those); on known systems they held the truth in 0.87-1.00 of runs (mostly 0.90-0.97; docs/estimators.md). "
            "With at least half as many features as questions the estimates are corrected for the sample PCA's tilt "
            "into the noise (pidcore.reduce.deattenuate; the intervals carry the correction, not the PCA's refit); "
            "directions near or below the noise edge stay lost, and a layer with such directions says so (a "
            "pca-loss warning)")
    if request.knockout:
        statement["knockout_target"] = (
            "knockout run analysed against the baseline's Y (layers before the window: delta exactly 0)"
            if request.knockout_target == "baseline" else "knockout run analysed against its own Y")
    return statement


def assemble_result(request: AnalysisRequest, features: dict, layer_results: dict, *, timing=None) -> dict:
    """The pidflow.result/1 document from {"baseline", "knockout"} features and analyze_layers outputs."""
    baseline, knocked = features["baseline"], features.get("knockout")
    base_layers, knock_layers = layer_results["baseline"], layer_results.get("knockout")
    if knocked is not None and knock_layers is not None:
        knock_layers = reuse_identical_layers(baseline, knocked, base_layers, knock_layers)
    questions = []
    for index in range(baseline.n):
        question = {"qid": str(baseline.qids[index]), "task": str(baseline.tasks[index]),
                    "question": str(baseline.questions[index]), "answer": str(baseline.answers[index]),
                    "image_id": str(baseline.image_ids[index]), "baseline": _answer(baseline, index)}
        if knocked is not None:
            question["knockout"] = _answer(knocked, index)
        questions.append(question)

    def pointwise(entries):
        per_layer = [entry["pointwise"] for entry in sorted(entries, key=lambda e: e["layer"])]
        return [[layer[q] for layer in per_layer] for q in range(baseline.n)]

    effects = None
    if knocked is not None:
        def known(values, ok):  # a features file may lack answers (predicted "") or p(gold) (NaN)
            return values if ok else None

        p_known = bool(np.isfinite(baseline.p_correct).all() and np.isfinite(knocked.p_correct).all())
        answers_known = bool((baseline.predicted != "").all() and (knocked.predicted != "").all())
        answers = {"baseline_p_correct": known(baseline.p_correct, p_known),
                   "knockout_p_correct": known(knocked.p_correct, p_known),
                   "baseline_correct": known(baseline.correct, answers_known),
                   "knockout_correct": known(knocked.correct, answers_known)}
        effects = knockout_effects(_run(baseline, base_layers)["layers"], _run(knocked, knock_layers)["layers"],
                                   window=request.knockout["layers"], **answers)
        from pidcore.pipeline.layerwise import bootstrap_question_rows

        rows = bootstrap_question_rows(baseline.n, request.bootstrap, request.seed) if request.bootstrap else None
        effects = add_intervals(effects, sorted(base_layers, key=lambda e: e["layer"]),
                                sorted(knock_layers, key=lambda e: e["layer"]), estimator=request.estimator,
                                rows=rows, **answers)
    return {
        "schema": SCHEMA,
        "request": request.to_dict(),
        "model": baseline.meta["model"],
        "code_version": __version__,
        "n_questions": baseline.n,
        "runs": {"baseline": _run(baseline, base_layers),
                 "knockout": _run(knocked, knock_layers) if knocked is not None else None},
        "effects": effects,
        "gaussianization_plan": next((e.get("gaussianization_plan") for e in base_layers), None),
        "estimates": estimates_statement(request),
        "questions": questions,
        "pointwise": {"baseline": pointwise(base_layers),
                      "knockout": pointwise(knock_layers) if knocked is not None else None},
        "pointwise_axes": ["question", "layer", "term"],  # pointwise[run][question][layer][term], bits
        "pointwise_terms": ["redundancy", "unique_vision", "unique_language", "synergy"],
        "timing": dict(timing or {}),
    }


def run_analysis(request: AnalysisRequest, progress=None) -> dict:
    """Everything: extraction (baseline, knockout), PID per layer, effects -> result document."""
    if isinstance(request, dict):
        request = AnalysisRequest.from_dict(request)
    steps = _Progress(progress)
    started = time.perf_counter()
    features = extract_features(request, progress=steps.part(0.0, 0.3).callback())
    extracted = time.perf_counter()
    runs = [name for name in ("baseline", "knockout") if features.get(name) is not None]
    layer_results = {"knockout": None}
    plan = gaussianization_plan(features["baseline"], request)  # one plan for every layer of both runs
    for index, name in enumerate(runs):
        part = steps.part(0.3 + 0.7 * index / len(runs), 0.3 + 0.7 * (index + 1) / len(runs))
        layers = differing_layers(features["baseline"], features[name]) if name == "knockout" else None
        layer_results[name] = analyze_layers(features[name], request, progress=part.callback(), plan=plan,
                                             layers=layers) if layers != [] else []
    timing = {"extract_s": round(extracted - started, 3), "analyze_s": round(time.perf_counter() - extracted, 3)}
    result = assemble_result(request, features, layer_results, timing=timing)
    if callable(progress):
        progress(1.0, "done")
    return result
