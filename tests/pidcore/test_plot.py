"""pidcore.plot: the dashboard's figures from result objects (LayerwiseResult) and result documents."""

from __future__ import annotations

import numpy as np
import pytest

from pidcore import plot
from pidcore.pipeline.layerwise import layerwise

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")


@pytest.fixture(scope="module")
def runs():
    """Two runs of three layers over the same 300 rows and one target; the knockout run's layer 0 is the
    baseline's, its layers 1-2 lose most of the vision signal."""
    rng = np.random.default_rng(0)
    n = 300
    y = rng.normal(size=(n, 2))
    vision = [y[:, :1] * k + rng.normal(size=(n, 3)) for k in (0.3, 0.6, 0.9)]
    language = [y[:, 1:] * k + rng.normal(size=(n, 3)) for k in (0.9, 0.6, 0.3)]
    cut = [vision[0]] + [0.1 * v + rng.normal(size=v.shape) for v in vision[1:]]
    options = dict(dims=(2, 2, 2), gaussianize="none", bootstrap=30, seed=0)
    return layerwise(vision, language, y, **options), layerwise(cut, language, y, **options)


def test_result_document_holds_each_layers_parts_intervals_and_paired_effects(runs):
    baseline, knocked = runs
    document = plot.result_document(baseline, knocked, window=(0, 1), edges=["image->question"],
                                    tasks=["a", "b"] * 150, model="toy")
    layers = document["runs"]["baseline"]["layers"]
    assert [layer["layer"] for layer in layers] == [0, 1, 2]
    for index, layer in enumerate(layers):
        assert layer["unique_vision"] == pytest.approx(baseline.layers[index].pid.unique1)
        assert layer["unique_language"] == pytest.approx(baseline.layers[index].pid.unique2)
        assert layer["ci"]["total"] == pytest.approx(list(baseline.layers[index].ci["total"]))
        assert "draws" not in layer
    per_layer = document["effects"]["per_layer"]
    assert all(per_layer[0][term] == 0.0 and per_layer[0]["ci"][term] == [0.0, 0.0] for term in TERMS)
    assert per_layer[2]["unique_vision"] == pytest.approx(knocked.unique1[2] - baseline.unique1[2])
    assert per_layer[2]["unique_vision"] < 0 and not per_layer[2]["within_noise"]["unique_vision"]
    assert np.array(document["pointwise"]["baseline"]).shape == (300, 3, 4)
    assert plot.describe(document) == "toy · a, b · knockout image->question"


def test_builders_take_result_objects_as_they_take_documents(runs):
    baseline, knocked = runs
    document = plot.result_document(baseline, knocked, window=(0, 1))
    pairs = [(plot.stacked_figure(baseline), plot.stacked_figure(document)),
             (plot.stacked_figure(baseline, "knockout", knockout=knocked, window=(0, 1)),
              plot.stacked_figure(document, "knockout")),
             (plot.difference_figure(baseline, knockout=knocked, window=(0, 1)), plot.difference_figure(document))]
    for from_objects, from_document in pairs:
        assert from_objects.to_plotly_json() == from_document.to_plotly_json()
    assert plot.shared_y_max(baseline, knockout=knocked) == plot.shared_y_max(document)
    stacked = plot.stacked_figure(baseline)
    total = next(t for t in stacked.data if t.meta == "total")
    assert list(total.y) == pytest.approx(list(np.maximum(baseline.redundancy, 0) + np.maximum(baseline.unique1, 0)
                                               + np.maximum(baseline.unique2, 0) + np.maximum(baseline.synergy, 0)))
    difference = plot.difference_figure(baseline, knockout=knocked, window=(0, 1))
    (shade,) = [s for s in difference.layout.shapes if s.type == "rect"]
    assert (shade.x0, shade.x1) == (0.5, 2.5)
    overlay = plot.task_overlay_figure(baseline, "unique_vision", tasks=["a", "b"] * 150)
    assert sorted(t.meta for t in overlay.data) == ["a", "b"]
    first = np.array(baseline.layers[1].pointwise)[::2, 1].mean()
    assert next(t for t in overlay.data if t.meta == "a").y[1] == pytest.approx(first)
    assert plot.layer_correlations(baseline, document)["total"] == pytest.approx(1.0)


def test_wrong_inputs_say_what_is_expected(runs):
    baseline, knocked = runs
    with pytest.raises(TypeError, match="LayerwiseResult"):
        plot.stacked_figure([1, 2, 3])
    with pytest.raises(TypeError, match="knockout= goes with"):
        plot.difference_figure({"runs": {}}, knockout=knocked)
    with pytest.raises(ValueError, match="window"):
        plot.result_document(baseline, knocked, window=(1,))
    assert plot.difference_figure(baseline).layout.annotations[0].text.startswith("No knockout")


def test_study_figures_are_the_study_modules_and_the_dashboard_uses_these_builders():
    from pidcore.study import figures as study_figures

    assert plot.small_multiples is study_figures.small_multiples and plot.sweep_heatmap is study_figures.sweep_heatmap
    figures = pytest.importorskip("app.ui.figures")
    wording = pytest.importorskip("app.ui.wording")
    assert figures.stacked_figure is plot.stacked_figure and figures.difference_figure is plot.difference_figure
    assert plot.TERM_NAMES == wording.TERM_NAMES
    for value in (0.0, -0.0004, 1.23456, -2.5, None, float("nan"), 3):
        assert plot.fmt(value) == wording.fmt(value) and plot.fmt(value, 2, True) == wording.fmt(value, 2, True)
