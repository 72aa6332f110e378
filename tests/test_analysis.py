"""AnalysisRequest validation, knockout effects on known values, the text table, and a whole analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pidcore.pipeline.analysis import AnalysisRequest, analyze_layers, extract_features, run_analysis
from pidcore.pipeline.effects import knockout_effects, last_third
from pidcore.pipeline.report import format_layer_table

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread for the tiny models


def test_request_defaults_round_trip_and_hash():
    request = AnalysisRequest.from_dict({})
    assert request.to_dict()["tasks"] == ["color"] and request.dims == (8, 8, 4)
    again = AnalysisRequest.from_dict(json.loads(json.dumps(request.to_dict())))
    assert again == request and again.content_hash() == request.content_hash()
    assert len(request.content_hash()) == 64
    assert AnalysisRequest.from_dict({"seed": 1}).content_hash() != request.content_hash()
    knocked = AnalysisRequest.from_dict({"knockout": {"edges": ["image->last"], "layers": [1, 3]}})
    assert knocked.to_dict()["knockout"] == {"edges": ["image->last"], "layers": [1, 3]}


def test_request_errors_list_every_problem():
    with pytest.raises(ValueError) as error:
        AnalysisRequest.from_dict({"n_questions": 0, "measure": "iccs", "dims": [16, 16], "colour": 1,
                                   "knockout": {"edges": ["image->answer"], "layers": [3, 1]}})
    message = str(error.value)
    for fragment in ("n_questions", "measure", "dims", "'colour'", "knockout edges", "knockout layers"):
        assert fragment in message
    with pytest.raises(ValueError, match="correct_only"):
        AnalysisRequest.from_dict({"correct_only": "yes"})
    with pytest.raises(ValueError, match="JSON object"):
        AnalysisRequest.from_dict([1, 2])


def _layers(values):
    return [{"layer": i, "redundancy": r, "unique_vision": u1, "unique_language": u2, "synergy": s,
             "total": r + u1 + u2 + s} for i, (r, u1, u2, s) in enumerate(values)]


def test_knockout_effects_on_known_values():
    baseline = _layers([(0.1, 0.2, 0.0, 0.1)] * 6)
    knocked = _layers([(0.1, 0.2, 0.0, 0.1)] * 2 + [(0.1, 0.3, 0.0, 0.3)] * 2 + [(0.1, 0.5, 0.0, 0.0)] * 2)
    effects = knockout_effects(baseline, knocked, window=(1, 2), baseline_p_correct=[0.8, 0.6],
                               knockout_p_correct=[0.4, 0.3], baseline_correct=[True, True],
                               knockout_correct=[True, False])
    assert last_third(6) == [4, 5] and effects["late_layers"] == [4, 5]
    assert effects["trapped_unique_vision"] == pytest.approx(0.3)
    # reached layers 2..5: synergy deltas 0.2, 0.2, -0.1, -0.1; total deltas 0.3, 0.3, 0.2, 0.2
    assert effects["compensatory_synergy"] == pytest.approx(0.05)
    assert effects["information_cost"] == pytest.approx(-0.25)
    assert effects["answer_probability_change"] == pytest.approx(-0.35)
    assert effects["answer_probability_change_pct"] == pytest.approx(-50.0)
    assert effects["accuracy_change"] == pytest.approx(-0.5)
    assert effects["per_layer"][0]["total"] == 0.0 and effects["per_layer"][3]["synergy"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="same non-zero number"):
        knockout_effects(baseline, knocked[:3])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from pidcore.demo.build import easy_vqa_vocabulary

    from .extract.conftest import save_tiny_llava

    return str(save_tiny_llava(tmp_path_factory.mktemp("tiny"), words=easy_vqa_vocabulary()))


@pytest.mark.parametrize("measure", ["mmi", "broja"])
def test_whole_analysis_with_knockout(tiny_model, measure):
    request = AnalysisRequest.from_dict({
        "model": tiny_model, "tasks": ["color", "shape"], "n_questions": 12, "measure": measure,
        "dims": [4, 4, 3], "gaussianize": False, "bootstrap": 0,
        "knockout": {"edges": ["image->question"], "layers": [2, 3]}})
    seen = []
    result = run_analysis(request, progress=lambda fraction, message: seen.append(fraction))
    assert result["schema"] == "pidflow.result/1" and result["n_questions"] == 24
    assert result["model"]["num_layers"] == 4
    assert json.loads(json.dumps(result)) == result
    baseline, knocked = result["runs"]["baseline"]["layers"], result["runs"]["knockout"]["layers"]
    assert [entry["layer"] for entry in baseline] == list(range(5))
    for entry in baseline:
        parts = entry["redundancy"] + entry["unique_vision"] + entry["unique_language"] + entry["synergy"]
        assert parts == pytest.approx(entry["total"], abs=1e-9) and entry["total"] >= 0
    assert len(knocked) == 5 and len(result["effects"]["per_layer"]) == 5
    assert any(k["total"] != b["total"] for k, b in zip(knocked, baseline, strict=True))
    features = extract_features(request)  # before the window the knocked states are the baseline's
    np.testing.assert_array_equal(features["knockout"].language[:3], features["baseline"].language[:3])
    assert not np.array_equal(features["knockout"].language[3], features["baseline"].language[3])
    assert np.array(result["pointwise"]["baseline"]).shape == (24, 5, 4)
    questions = result["questions"]
    assert {q["task"] for q in questions} == {"color", "shape"} and all("knockout" in q for q in questions)
    assert all(q["question"].endswith("?") and q["image_id"].startswith("easy-vqa.") for q in questions)
    assert result["runs"]["baseline"]["accuracy"] == np.mean([q["baseline"]["correct"] for q in questions])
    assert seen == sorted(seen) and seen[-1] == 1.0
    table = format_layer_table(result)
    assert len([line for line in table.splitlines() if line.strip()[:1].isdigit()]) == 5
    assert "trapped_unique_vision" in table and "dU_v" in table
    again = run_analysis(request)
    assert again["runs"] == result["runs"], "deterministic for a seed"


def test_knockout_deltas_before_the_window_are_exactly_zero_with_the_baseline_target(tiny_model):
    """The knockout run is analysed against the baseline's Y by default: every pooled layer up to the window's
    first decoder layer has the same PID in both runs (delta exactly 0, paired interval [0, 0], within noise);
    with each run's own Y those layers move. Every effect metric has a paired interval holding its value."""
    base = {"model": tiny_model, "tasks": ["color", "shape"], "n_questions": 40, "dims": [3, 3, 2],
            "gaussianize": "flow", "bootstrap": 60, "knockout": {"edges": ["image->question"], "layers": [2, 3]}}
    result = run_analysis(AnalysisRequest.from_dict(base))
    effects = result["effects"]
    for entry in effects["per_layer"][:3]:  # pooled layers 0-2: before decoder layer 2 acts
        for term in ("redundancy", "unique_vision", "unique_language", "synergy", "total"):
            assert entry[term] == 0.0 and entry["ci"][term] == [0.0, 0.0] and entry["within_noise"][term], term
    assert any(entry["total"] != 0.0 for entry in effects["per_layer"][3:])
    for name, (lo, hi) in effects["intervals"].items():
        assert lo <= effects[name] <= hi, name
    assert set(effects["intervals"]) >= {"trapped_unique_vision", "compensatory_synergy", "information_cost",
                                         "answer_probability_change", "answer_probability_change_pct",
                                         "accuracy_change"}
    assert "baseline's Y" in result["estimates"]["knockout_target"]
    assert all("draws" not in entry for entry in result["runs"]["baseline"]["layers"])
    own = run_analysis(AnalysisRequest.from_dict({**base, "knockout_target": "own"}))
    assert any(entry["total"] != 0.0 for entry in own["effects"]["per_layer"][:3])
    assert own["runs"]["baseline"]["layers"] == result["runs"]["baseline"]["layers"]


def test_bad_task_and_window_are_clear(tiny_model):
    with pytest.raises(ValueError, match="unknown task"):
        run_analysis(AnalysisRequest.from_dict({"model": tiny_model, "tasks": ["size"], "n_questions": 4}))
    request = AnalysisRequest.from_dict({"model": tiny_model, "n_questions": 4,
                                         "knockout": {"edges": ["image->last"], "layers": [1, 7]}})
    with pytest.raises(ValueError, match="outside the model"):
        run_analysis(request)


def test_analyze_layers_maps_pipeline_output_to_result_names(monkeypatch):
    """One layerwise call for the chosen layers; its PID, CIs and pointwise terms land under the result's names."""
    import sys
    import types

    from pidcore.estimators.pid import PID
    from pidcore.extract import Features

    calls = []

    def fake_layerwise(x1_layers, x2_layers, y, **options):
        calls.append(([x.shape for x in x1_layers], {k: v for k, v in options.items() if k != "progress"}))
        pid = PID(redundancy=0.1, unique1=0.2, unique2=0.3, synergy=0.4, total=1.0)
        ci = {"redundancy": (0.0, 0.2), "unique1": (0.1, 0.3), "unique2": (0.2, 0.4), "synergy": (0.3, 0.5),
              "total": (0.9, 1.1)}
        layer = types.SimpleNamespace(pid=pid, ci=ci, pointwise=np.tile([0.1, 0.2, 0.3, 0.4], (len(y), 1)),
                                      gaussianization="copula", plugin=pid, estimator="corrected",
                                      bias=dict.fromkeys(pid.as_dict(), 0.0), samples_per_covariance=len(y),
                                      draws=None)
        return types.SimpleNamespace(layers=[layer] * len(x1_layers))

    monkeypatch.setitem(sys.modules, "pidcore.pipeline.layerwise", types.SimpleNamespace(layerwise=fake_layerwise))
    n, rng = 5, np.random.default_rng(0)
    features = Features(vision=rng.normal(size=(3, n, 6)), language=rng.normal(size=(3, n, 6)),
                        target=rng.normal(size=(n, 2)), qids=np.arange(n).astype(str), tasks=np.array(["c"] * n),
                        answers=np.array(["a"] * n), predicted=np.array(["a"] * n), p_correct=np.ones(n),
                        correct=np.ones(n, bool), answer_set=np.array(["a", "b"]),
                        questions=np.array(["q"] * n), image_ids=np.arange(n).astype(str))
    request = AnalysisRequest.from_dict({"dims": [3, 3, 2], "bootstrap": 10, "seed": 4})
    entries = analyze_layers(features, request, layers=[2, 0])
    assert [entry["layer"] for entry in entries] == [2, 0]
    assert entries[0]["unique_vision"] == 0.2 and entries[0]["unique_language"] == 0.3
    assert entries[0]["ci"]["unique_vision"] == [0.1, 0.3] and entries[0]["ci"]["total"] == [0.9, 1.1]
    assert np.array(entries[1]["pointwise"]).shape == (n, 4) and entries[0]["gaussianization"] == "copula"
    assert calls == [([(5, 6), (5, 6)], {"dims": (3, 3, 2), "gaussianize": "auto", "measure": "broja",
                                          "estimator": "corrected", "bootstrap": 10, "seed": 4, "plan": None,
                                          "layer_ids": [2, 0], "reduce_first": False})], "one layerwise call for all layers"
    with pytest.raises(ValueError, match="outside"):
        analyze_layers(features, request, layers=[3])


def test_pipeline_warnings_reach_the_layer_they_name():
    """A low-rank language source at model layer 2 (analysed as the pipeline's layer 1 of [0, 2]) is reported
    on layer 2's entry, under the model's layer index; other layers carry no warning."""
    from pidcore.extract import Features

    n, rng = 120, np.random.default_rng(1)
    language = rng.normal(size=(3, n, 6))
    language[2] = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 6))  # rank 2 < 3 requested components
    features = Features(vision=rng.normal(size=(3, n, 6)), language=language,
                        target=rng.normal(size=(n, 2)), qids=np.arange(n).astype(str), tasks=np.array(["c"] * n),
                        answers=np.array(["a"] * n), predicted=np.array(["a"] * n), p_correct=np.ones(n),
                        correct=np.ones(n, bool), answer_set=np.array(["a", "b"]),
                        questions=np.array(["q"] * n), image_ids=np.arange(n).astype(str))
    request = AnalysisRequest.from_dict({"dims": [3, 3, 2], "gaussianize": False})
    with pytest.warns(RuntimeWarning, match="rank 2"):
        entries = analyze_layers(features, request, layers=[0, 2])
    assert "warnings" not in entries[0]
    assert entries[1]["warnings"] == ["x2 (layer 2): the data has rank 2 < 3 requested components; keeping 2"]


def test_gaussianize_modes_in_requests_and_old_booleans():
    assert AnalysisRequest().gaussianize == "auto"
    assert AnalysisRequest.from_dict({"gaussianize": "copula"}).gaussianize == "copula"
    assert AnalysisRequest.from_dict({"gaussianize": True}).gaussianize == "auto"
    assert AnalysisRequest.from_dict({"gaussianize": False}).to_dict()["gaussianize"] == "none"
    with pytest.raises(ValueError, match="gaussianize must be one of auto, none, copula, flow"):
        AnalysisRequest.from_dict({"gaussianize": "flows"})


def test_a_knockout_run_analyses_only_the_layers_that_differ_and_takes_the_rest_from_its_baseline():
    """Layers before the window are bit-identical in both runs (same Y): they are not analysed again, and their
    entries are the baseline's (delta exactly 0); a different Y makes every layer differ."""
    import copy

    from pidcore.extract import Features
    from pidcore.pipeline.analysis import differing_layers, reuse_identical_layers

    n, rng = 150, np.random.default_rng(7)
    baseline = Features(vision=rng.normal(size=(4, n, 6)), language=rng.normal(size=(4, n, 6)),
                        target=rng.normal(size=(n, 2)), qids=np.arange(n).astype(str), tasks=np.array(["c"] * n),
                        answers=np.array(["a"] * n), predicted=np.array(["a"] * n), p_correct=np.ones(n),
                        correct=np.ones(n, bool), answer_set=np.array(["a", "b"]),
                        questions=np.array(["q"] * n), image_ids=np.arange(n).astype(str))
    knocked = copy.deepcopy(baseline)
    knocked.vision[2:] += 0.5 * rng.normal(size=knocked.vision[2:].shape)
    assert differing_layers(baseline, knocked) == [2, 3]
    request = AnalysisRequest.from_dict({"dims": [3, 3, 2], "bootstrap": 0})
    base = analyze_layers(baseline, request)
    knock = analyze_layers(knocked, request, layers=[2, 3])
    merged = reuse_identical_layers(baseline, knocked, base, knock)
    assert [entry["layer"] for entry in merged] == [0, 1, 2, 3]
    assert merged[0]["total"] == base[0]["total"] and merged[1]["reused_from_baseline"]
    assert merged[2] is knock[0] and merged[2]["unique_vision"] != base[2]["unique_vision"]
    other_y = copy.deepcopy(knocked)
    other_y.target = other_y.target + 1e-3 * rng.normal(size=other_y.target.shape)
    assert differing_layers(baseline, other_y) == [0, 1, 2, 3]
