"""Analyses of a features file: the request that names it, the questions it picks, the local run.

A features file's analysis is an ordinary AnalysisRequest whose model is "features:<sha256 of the file>"
and whose dataset is "features": tasks pick the file's tasks, n_questions the first questions of each task
(file order), correct_only the questions whose `predicted` equals `answers`. language_pooling and target
must say what the file holds (they come from its meta), and so must knockout: null, or the window of the
knocked-out run the file holds (meta.knockout). The result is a pidflow.result/1 document like any other,
with knockout effects when the file has a knocked-out run.
"""

from __future__ import annotations

import time

import numpy as np

from pidcore.features.files import FeatureSet, read_features
from pidcore.pipeline.analysis import (
    AnalysisRequest,
    analyze_layers,
    assemble_result,
    differing_layers,
    gaussianization_plan,
)

PREFIX = "features:"
DATASET = "features"
SPLIT = "uploaded"
ANALYSIS_OPTIONS = ("measure", "dims", "gaussianize", "bootstrap", "seed", "correct_only")


def is_features_model(model) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def features_sha(model: str) -> str:
    """The sha256 in "features:<sha256>"; ValueError if the model does not name a features file."""
    sha = model[len(PREFIX):] if is_features_model(model) else ""
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"model {model!r} does not name a features file (features:<64 hex digits>)")
    return sha


def features_request(feature_set: FeatureSet, **options) -> dict:
    """The AnalysisRequest dict that analyses every question of the file (default PCA sizes capped at the
    file's dimensions); `options` may set measure, dims, gaussianize, bootstrap, seed, correct_only, tasks and
    n_questions."""
    counts = feature_set.task_counts()
    unknown = sorted(set(options) - {*ANALYSIS_OPTIONS, "tasks", "n_questions"})
    if unknown:
        raise ValueError(f"features analysis: unknown option(s) {unknown}")
    sizes = feature_set.describe()
    request = {**AnalysisRequest().to_dict(), "model": feature_set.model, "dataset": DATASET,
               "tasks": sorted(counts), "split": SPLIT, "n_questions": max(counts.values()),
               "language_pooling": sizes["language_pooling"], "target": sizes["target"],
               "knockout": sizes["knockout"]}
    request["dims"] = [min(d, sizes[name]) for d, name in zip(request["dims"], ("vision_dim", "language_dim",
                                                                               "target_dim"), strict=True)]
    request.update({key: value for key, value in options.items() if value is not None})
    return AnalysisRequest.from_dict(request).to_dict()


def check_request(request: AnalysisRequest, description: dict) -> None:
    """ValueError when the request does not fit the file (wrong hash, tasks, pooling, target, knockout);
    `description` is the file's FeatureSet.describe()."""
    problems = []
    if request.model != description["model"]:
        problems.append(f"the request names {request.model}, the file is {description['model']}")
    if request.dataset != DATASET or request.split != SPLIT:
        problems.append(f"dataset and split must be {DATASET!r} and {SPLIT!r} for a features file")
    missing = [task for task in request.tasks if task not in description["tasks"]]
    if missing:
        problems.append(f"task(s) {missing} are not in the file (it has {', '.join(description['tasks'])})")
    for name in ("language_pooling", "target"):
        if getattr(request, name) != description[name]:
            problems.append(f"{name} is {getattr(request, name)!r} but the file holds {description[name]!r} (its meta)")
    held = description.get("knockout")
    if request.knockout != (None if held is None else {"edges": list(dict.fromkeys(held["edges"])),
                                                         "layers": list(held["layers"])}):
        problems.append(f"knockout must be {held!r}: the file's knocked-out run (meta.knockout), or null when it "
                        f"has none; got {request.knockout!r}")
    if problems:
        raise ValueError("features analysis: " + "; ".join(problems))


def select_features(feature_set: FeatureSet, request: AnalysisRequest) -> dict:
    """{"baseline": Features, "knockout": None}: the request's questions of the file (see module doc)."""
    check_request(request, feature_set.describe())
    features = feature_set.features
    keep = []
    for task in request.tasks:
        rows = np.flatnonzero(features.tasks == task)
        if request.correct_only:
            if not np.any(features.predicted[rows] != ""):
                raise ValueError(f"correct_only: the file has no predicted answers for task {task!r}")
            rows = rows[features.correct[rows]]
        keep.extend(rows[:request.n_questions].tolist())
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} question(s) of the file are selected; need at least 2")
    rows = np.array(sorted(keep))
    knocked = feature_set.knockout.subset(rows) if feature_set.knockout is not None else None
    return {"baseline": features.subset(rows), "knockout": knocked}


def analyze_features(source, request: dict | AnalysisRequest | None = None, *, progress=None, **options) -> dict:
    """The pidflow.result/1 document of a features file (a path, bytes or a FeatureSet) analysed here.

    `request` (a dict or AnalysisRequest naming this file) or `options` (see features_request) say how.
    """
    feature_set = source if isinstance(source, FeatureSet) else read_features(source)
    if request is None:
        request = features_request(feature_set, **options)
    elif options:
        raise ValueError("give either a request or options, not both")
    if isinstance(request, dict):
        request = AnalysisRequest.from_dict(request)
    started = time.perf_counter()
    features = select_features(feature_set, request)
    runs = {"knockout": None}
    plan = gaussianization_plan(features["baseline"], request)  # one plan for every layer of both runs
    for name in ("baseline", "knockout"):
        if features[name] is not None:
            layers = differing_layers(features["baseline"], features[name]) if name == "knockout" else None
            runs[name] = analyze_layers(features[name], request, progress=progress, plan=plan,
                                        layers=layers) if layers != [] else []
    timing = {"extract_s": 0.0, "analyze_s": round(time.perf_counter() - started, 3)}
    return assemble_result(request, features, runs, timing=timing)
