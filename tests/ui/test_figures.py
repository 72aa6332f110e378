"""Figure builders on documents with known numbers."""

import math

import pytest

from app.ui import figures
from tests.ui.demo_result import TERMS, layer_terms, make_document

KNOCKOUT = {"edges": ["image->question"], "layers": [1, 3]}


def pid_traces(fig):
    return [t for t in fig.data if t.meta in TERMS]


def test_stacked_has_one_point_per_layer_and_stacks_to_total():
    document = make_document({"tasks": ["color"]}, num_layers=6)
    fig = figures.stacked_figure(document, "baseline", "bits")
    traces = pid_traces(fig)
    assert [t.meta for t in traces] == list(TERMS)
    for trace in traces:
        assert list(trace.x) == list(range(7)) and trace.stackgroup == "pid"
    for layer in range(7):
        stacked = sum(t.y[layer] for t in traces)
        assert stacked == pytest.approx(document["runs"]["baseline"]["layers"][layer]["total"])
        assert traces[1].y[layer] == pytest.approx(layer_terms(layer)[1])


def test_fraction_mode_sums_to_one():
    fig = figures.stacked_figure(make_document({"tasks": ["color"]}, num_layers=9), "baseline", "fraction")
    traces = pid_traces(fig)
    for layer in range(10):
        assert sum(t.y[layer] for t in traces) == pytest.approx(1.0)


def test_fraction_of_zero_total_is_zero_not_nan():
    layers = [{"layer": 0, "redundancy": 0.0, "unique_vision": 0.0, "unique_language": 0.0, "synergy": 0.0,
               "total": 0.0}]
    assert figures.term_values(layers, "synergy", "fraction") == [0.0]
    with pytest.raises(ValueError, match="mode"):
        figures.term_values(layers, "synergy", "percent")


def test_confidence_bands_surround_each_stack_boundary():
    document = make_document({"tasks": ["color"]}, num_layers=4, with_ci=True)
    fig = figures.stacked_figure(document, "baseline", "bits")
    bands = [t for t in fig.data if str(t.meta).startswith("ci:")]
    assert len(bands) == 8  # lower and upper edge per term
    lower, upper = bands[0], bands[1]  # redundancy: CI is [v - 0.02, v + 0.03]
    for layer in range(5):
        value = layer_terms(layer)[0]
        assert lower.y[layer] == pytest.approx(value - 0.02)
        assert upper.y[layer] == pytest.approx(value + 0.03)
    assert not [t for t in figures.stacked_figure(make_document({}), "baseline").data
                if str(t.meta).startswith("ci:")]


def test_difference_is_knockout_minus_baseline():
    document = make_document({"tasks": ["color"], "knockout": KNOCKOUT}, num_layers=5)
    fig = figures.difference_figure(document)
    by_term = {t.meta: t for t in fig.data}
    assert list(by_term["unique_vision"].y) == pytest.approx([0.1] * 6)
    assert list(by_term["synergy"].y) == pytest.approx([0.05] * 6)
    assert list(by_term["redundancy"].y) == pytest.approx([0.0] * 6)
    assert list(by_term["total"].y) == pytest.approx([0.15] * 6)
    # decoder layers 1..3 are run layers 2..4 (run layer 0 = embeddings)
    assert fig.layout.shapes[-1].x0 == 1.5 and fig.layout.shapes[-1].x1 == 4.5


def test_missing_knockout_gives_a_message_not_an_error():
    document = make_document({"tasks": ["color"]})
    fig = figures.difference_figure(document)
    assert not fig.data and "No knockout" in fig.layout.annotations[0].text
    assert "No knockout run" in figures.stacked_figure(document, "knockout").layout.annotations[0].text


def test_task_overlay_means_pointwise_per_task():
    document = make_document({"tasks": ["color", "shape"]}, num_layers=3, n_questions=6)
    series = figures.task_series(document, "baseline", "total")
    assert set(series) == {"color", "shape"}
    for layer in range(4):
        assert series["color"][layer] == pytest.approx(sum(layer_terms(layer)))
        assert series["shape"][layer] == pytest.approx(sum(layer_terms(layer)) + 4 * 0.3)
    fig = figures.task_overlay_figure(document, "synergy")
    assert [t.name for t in fig.data] == ["color", "shape"]


def test_pearson_known_values_and_undefined_cases():
    assert figures.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert figures.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert figures.pearson([1, 1, 1], [1, 2, 3]) is None
    assert figures.pearson([1], [1]) is None


def test_layer_correlation_of_an_analysis_with_itself_and_with_a_deeper_model():
    first = make_document({"tasks": ["color"]}, num_layers=6)
    same = figures.layer_correlations(first, first)
    assert all(r == pytest.approx(1.0) for r in same.values())
    # a 12-layer model whose curves are the 6-layer ones at double resolution: linear terms correlate exactly
    deeper = make_document({"tasks": ["color"]}, num_layers=12)
    for layer in deeper["runs"]["baseline"]["layers"]:
        layer["redundancy"] = 0.1 + 0.025 * layer["layer"]
    correlations = figures.layer_correlations(first, deeper)
    assert correlations["redundancy"] == pytest.approx(1.0)
    fig = figures.comparison_figure(first, deeper)
    assert len(fig.data) == 8 and fig.data[4].x[-1] == 1.0 and len(fig.data[4].x) == 13


def test_question_figure_has_baseline_and_knockout_lines():
    view = {"baseline": {"layers": [{"layer": i, **dict(zip(TERMS, layer_terms(i), strict=True))}
                                    for i in range(4)]},
            "knockout": {"layers": [{"layer": i, **dict(zip(TERMS, layer_terms(i, True), strict=True))}
                                    for i in range(4)]}}
    fig = figures.question_figure(view)
    assert len(fig.data) == 8
    knockout_uv = next(t for t in fig.data if t.meta == "knockout:unique_vision")
    assert knockout_uv.line.dash == "dash" and list(knockout_uv.y) == pytest.approx(
        [layer_terms(i)[1] + 0.1 for i in range(4)])
    assert not figures.question_figure({"baseline": None, "knockout": None}).data


def test_palette_is_okabe_ito():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    assert set(figures.TERM_COLOURS.values()) <= okabe_ito and set(figures.SERIES_COLOURS) <= okabe_ito
    assert not math.isnan(figures.relative_depth(1)[0])


def test_baseline_and_knockout_share_a_y_scale():
    document = make_document({"tasks": ["color"], "knockout": KNOCKOUT}, num_layers=4)
    y_max = figures.shared_y_max(document)
    assert y_max == pytest.approx(sum(layer_terms(4, knockout=True)))
    ranges = [figures.stacked_figure(document, run, "bits", y_max=y_max).layout.yaxis.range
              for run in ("baseline", "knockout")]
    assert ranges[0] == ranges[1] and ranges[0][1] == pytest.approx(1.05 * y_max)
