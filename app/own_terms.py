"""A new image and question placed among the questions of a demo-model analysis: its per-layer pointwise
terms (bits), for the "try your own image and question" box.

Results keep no fitted transforms (PCA, Gaussianization, the PID's covariance), so the question is placed
by refitting: the analysis's baseline pooled features (kept by the worker for demo-model analyses,
worker.tasks._keep_probe) get the new question as one more row, and the same pipeline with the same
request (bootstrap off) runs on the n + 1 rows (pidcore.pipeline.analysis.analyze_layers). The new row's pointwise
terms are what the question would have got as one more question of the analysis. `refit_shift_bits` says
how far that refit moved the analysis's own questions' terms (their largest absolute change), the price of
one extra row; it is small when n is large and the Gaussianization chose the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from app.attention import _adapter, _Item, _lock, check_question, load_own_image

PARTS = ("redundancy", "unique_vision", "unique_language", "synergy")
_PER_QUESTION = ("target", "qids", "tasks", "answers", "predicted", "p_correct", "correct", "questions", "image_ids")


@dataclasses.dataclass
class _OwnItem(_Item):
    qid: str = "own"
    task: str = ""
    answer: str = ""
    image_id: str = ""


def appended(features, extra):
    """`features` with the rows of `extra` after its own (same layers, hidden size and answer set)."""
    if extra.vision.shape[0] != features.vision.shape[0] or extra.vision.shape[2] != features.vision.shape[2]:
        raise ValueError("the new question's features do not match the analysis's (another model?)")
    joined = {name: np.concatenate([np.asarray(getattr(features, name)), np.asarray(getattr(extra, name))])
              for name in _PER_QUESTION}
    return dataclasses.replace(features, vision=np.concatenate([features.vision, extra.vision], axis=1),
                               language=np.concatenate([features.language, extra.language], axis=1), **joined)


def place(features, extra, request: dict, stored_pointwise: list | None = None) -> dict:
    """Pointwise terms (bits) of the last row of `extra` refitted among `features` with the analysis
    `request`: {layers: [{layer, R, U_v, U_l, S, total}], refit_shift_bits, n_questions, gaussianization}."""
    from pidcore.pipeline.analysis import AnalysisRequest, analyze_layers

    parsed = AnalysisRequest.from_dict({**request, "bootstrap": 0})
    entries = analyze_layers(appended(features, extra), parsed)
    layers = []
    for entry in entries:
        values = [float(v) for v in entry["pointwise"][-1]]
        layers.append({"layer": entry["layer"], **dict(zip(PARTS, values, strict=True)), "total": sum(values)})
    shift = None
    if stored_pointwise is not None and len(stored_pointwise) == features.n:
        refit = np.array([entry["pointwise"][:features.n] for entry in entries])  # (layers, n, 4)
        shift = float(np.max(np.abs(refit - np.transpose(np.asarray(stored_pointwise, dtype=float), (1, 0, 2)))))
    return {"layers": layers, "refit_shift_bits": shift, "n_questions": features.n,
            "gaussianization": [entry.get("gaussianization") for entry in entries]}


def own_terms(document: dict, features_bytes: bytes, image_bytes: bytes, question: str) -> dict:
    """The per-layer pointwise terms of an uploaded image and question within a demo-model analysis
    (`document`, whose baseline features are `features_bytes`)."""
    from pidcore.extract.features import Features
    from pidcore.extract.run import extract

    request = document.get("request") or {}
    if request.get("model") != "demo":
        raise ValueError("your own question can be placed in analyses of the bundled demo model only")
    features = Features.from_bytes(features_bytes)
    tasks = request.get("tasks") or [""]
    item = _OwnItem(question=check_question(question), image=load_own_image(image_bytes), task=tasks[0])
    with _lock:
        extra = extract(_adapter("demo"), [item], answers=[str(a) for a in features.answer_set],
                        language_pooling=request.get("language_pooling", "mean"),
                        target=request.get("target", "logprobs"), batch_size=1)
    return place(features, extra, request, (document.get("pointwise") or {}).get("baseline"))
