"""Placing a new question among an analysis's questions (app/own_terms.py) on synthetic pooled features with
known structure (no model): a copy of one of the analysis's questions gets that question's terms back; the
figure draws it over the analysis's own range; the worker keeps demo-model features next to the result."""

from __future__ import annotations

import numpy as np
import pytest

from app.own_terms import PARTS, appended, place
from app.ui import figures
from pidcore.extract.features import Features
from pidcore.pipeline.analysis import AnalysisRequest, analyze_layers
from tests.service.test_api_routes import redis_url  # noqa: F401 - fixture

REQUEST = {"model": "demo", "dims": [2, 2, 2], "gaussianize": "copula", "bootstrap": 0, "seed": 0}


def synthetic(n: int = 160, layers: int = 3, hidden: int = 5, seed: int = 0) -> Features:
    """Vision carries z0 (more in deeper layers), language z1; the target is z0 + z1 plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    noise = lambda: 0.5 * rng.normal(size=(n, hidden))  # noqa: E731
    vision = np.stack([np.c_[z[:, :1] * (layer + 1), rng.normal(size=(n, hidden - 1))] + noise()
                       for layer in range(layers)])
    language = np.stack([np.c_[z[:, 1:], rng.normal(size=(n, hidden - 1))] + noise() for _ in range(layers)])
    target = np.c_[z.sum(axis=1) + 0.3 * rng.normal(size=n), rng.normal(size=(n, 2))]
    same = lambda value: np.array([value] * n)  # noqa: E731
    return Features(vision=vision.astype(np.float32), language=language.astype(np.float32),
                    target=target.astype(np.float32), qids=np.array([f"q{i}" for i in range(n)]),
                    tasks=same("color"), answers=same("red"), predicted=same("red"), p_correct=np.full(n, 0.5),
                    correct=np.ones(n, bool), answer_set=np.array(["red", "blue", "green"]), questions=same("?"),
                    image_ids=same("img"))


def stored_pointwise(features: Features) -> np.ndarray:
    """(n, layers, 4) as a result document keeps them."""
    entries = analyze_layers(features, AnalysisRequest.from_dict(REQUEST))
    return np.transpose(np.array([entry["pointwise"] for entry in entries]), (1, 0, 2))


def test_a_copy_of_one_of_the_questions_gets_its_terms_back():
    features = synthetic()
    stored = stored_pointwise(features)
    placed = place(features, features.subset([7]), REQUEST, stored.tolist())
    mine = np.array([[layer[part] for part in PARTS] for layer in placed["layers"]])
    assert [layer["layer"] for layer in placed["layers"]] == [0, 1, 2] and placed["n_questions"] == 160
    assert [layer["total"] for layer in placed["layers"]] == pytest.approx(mine.sum(axis=1).tolist())
    # in the refit the copy and its twin are the same row of shared latents: the same terms exactly
    refit = analyze_layers(appended(features, features.subset([7])), AnalysisRequest.from_dict(REQUEST))
    assert mine == pytest.approx(np.array([entry["pointwise"][7] for entry in refit]), abs=1e-5)
    # and close to the twin's terms in the analysis itself, far closer than to the other questions'
    distance = np.abs(stored - mine).mean(axis=(1, 2))
    assert distance[7] < 0.1 < np.median(distance)
    assert 0 < placed["refit_shift_bits"] < 1.0  # what one more row moved, reported
    assert placed["gaussianization"][0]


def test_the_new_rows_must_match_the_analysis():
    features = synthetic()
    with pytest.raises(ValueError, match="do not match"):
        appended(features, synthetic(n=4, hidden=3))


def test_the_figure_draws_the_question_over_the_analysis_range():
    document = {"pointwise": {"baseline": [[[0.1 * q, 0.2, 0.0, 0.05 * layer] for layer in range(3)]
                                           for q in range(11)]}}
    terms = {"layers": [{"layer": layer, "redundancy": 0.5, "unique_vision": 0.1, "unique_language": 0.0,
                         "synergy": 0.2, "total": 0.8} for layer in range(3)]}
    traces = {trace.meta: trace for trace in figures.own_terms_figure(terms, document).data}
    assert list(traces["own:redundancy"].y) == [0.5, 0.5, 0.5]
    assert list(traces["median:redundancy"].y) == pytest.approx([0.5, 0.5, 0.5])  # median of 0.0..1.0
    band = list(traces["band:redundancy"].y)
    assert band[:3] == pytest.approx([0.9] * 3) and band[3:] == pytest.approx([0.1] * 3)  # 90 %, then 10 %
    assert list(traces["median:synergy"].y) == pytest.approx([0.0, 0.05, 0.1])
    assert "No pointwise" in str(figures.own_terms_figure({}, document).layout.annotations[0].text)


def test_the_worker_keeps_demo_features_next_to_the_result(redis_url):  # noqa: F811
    from types import SimpleNamespace

    from worker import tasks
    from worker.cache import JobStore, connect
    from worker.settings import WorkerSettings

    settings = WorkerSettings.from_env({"REDIS_URL": redis_url})
    store = JobStore(connect(settings), settings)
    features = synthetic(n=10)
    tasks._keep_probe(store, "0test0probe", AnalysisRequest.from_dict({"model": "demo"}), features)
    kept = Features.from_bytes(store.probe("0test0probe"))
    assert np.array_equal(kept.vision, features.vision) and list(kept.qids) == list(features.qids)
    assert 0 < store.redis.ttl(store.keys("0test0probe")["probe"]) <= settings.result_ttl_s
    tasks._keep_probe(store, "0test0other", SimpleNamespace(model="features:abc"), features)
    assert store.probe("0test0other") is None  # other models: nothing kept
    store.delete("0test0probe")
    assert store.probe("0test0probe") is None
