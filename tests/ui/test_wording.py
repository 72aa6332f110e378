"""Plain words and numbers on the dashboard: names, notes, rounding, captions, export titles."""

import math

import pytest

from app.ui import figures, wording
from tests.ui.demo_result import make_document

KNOCKOUT = {"edges": ["image->question"], "layers": [1, 3]}


@pytest.mark.parametrize("value, signed, text", [
    (-0.0001, False, "0.000"), (-0.0004, True, "0.000"), (0.0004, True, "0.000"), (-0.0006, True, "-0.001"),
    (0.25, True, "+0.250"), (1.23456, False, "1.235"), (None, False, "n/a"), (math.nan, False, "n/a"), (3, True, "+3"),
])
def test_numbers_never_read_minus_zero(value, signed, text):
    assert wording.fmt(value, 3, signed) == text


def test_notes_name_vision_language_and_target():
    assert wording.plain_note("x2 (layer 0): the data has rank 4 < 8") == "language (layer 0): the data has rank 4 < 8"
    assert wording.plain_note("x1: capped; y: rank 3") == "vision: capped; target: rank 3"
    assert wording.plain_note("proxy words stay") == "proxy words stay"


def test_caption_says_what_y_is():
    text = wording.target_sentence({"request": {"dims": [8, 8, 4], "target": "logprobs"}})
    assert "first 4 principal components" in text and "log-probabilities" in text and "exceed" in text
    assert "final hidden state" in wording.target_sentence({"request": {"dims": [8, 8, 2], "target": "hidden"}})


def test_method_note_from_whatever_the_result_states():
    assert wording.method_note({}) is None
    assert wording.method_note({"method": "bias-corrected plug-in"}) == "bias-corrected plug-in"
    assert wording.method_note({"method": {"statement": "intervals: 95% percentile"}}) == "intervals: 95% percentile"


def test_exports_are_titled_with_model_task_run_and_id():
    document = make_document({"tasks": ["color", "shape"], "knockout": KNOCKOUT})
    assert wording.describe_export(document, "abc123", "knockout") == "demo · color, shape · knockout · analysis abc123"
    assert wording.export_filename(document, "abc123", "difference") == "pidflow-demo-color+shape-difference-abc123"
    fig = figures.stacked_figure(document, "knockout", subtitle=wording.describe_export(document, "abc123", "knockout"))
    assert "analysis abc123" in fig.layout.title.subtitle.text


def test_hover_says_layer_and_total_and_bands_keep_the_shared_scale():
    document = make_document({"tasks": ["color"], "knockout": KNOCKOUT}, num_layers=4, with_ci=True)
    y_max = figures.shared_y_max(document)
    top_band = max(sum(layer[t] for t in figures.TERMS) + 0.03
                   for run in ("baseline", "knockout") for layer in figures.run_layers(document, run))
    assert y_max == pytest.approx(top_band)  # the knockout's upper band fits on the common scale
    base, knock = (figures.stacked_figure(document, run, y_max=y_max) for run in ("baseline", "knockout"))
    assert base.layout.yaxis.range == knock.layout.yaxis.range and base.layout.yaxis.range[1] == pytest.approx(1.05 * y_max)
    assert base.layout.xaxis.unifiedhovertitle.text == "layer %{x}"
    total = next(t for t in base.data if t.meta == "total")
    assert list(total.customdata) == [wording.fmt(layer["total"]) for layer in figures.run_layers(document, "baseline")]


def test_knockout_window_is_shaded_on_every_knockout_plot():
    document = make_document({"tasks": ["color"], "knockout": KNOCKOUT}, num_layers=6)
    for fig in (figures.stacked_figure(document, "knockout"), figures.difference_figure(document)):
        (shape,) = [s for s in fig.layout.shapes if s.type == "rect"]
        assert (shape.x0, shape.x1) == (1.5, 4.5)  # decoder layers 1..3 are plot layers 2..4
    assert not figures.stacked_figure(document, "baseline").layout.shapes
    assert wording.knockout_window(document) == "image->question attention blocked in decoder layers 1-3"


def test_comparison_is_small_multiples_per_term():
    first, second = make_document({"tasks": ["color"]}, num_layers=4), make_document({"tasks": ["shape"]}, num_layers=8)
    fig = figures.comparison_figure(first, second)
    axes = {trace.meta.split(":")[1]: set() for trace in fig.data}
    for trace in fig.data:
        axes[trace.meta.split(":")[1]].add(trace.xaxis)
    assert all(len(a) == 1 for a in axes.values()) and len({next(iter(a)) for a in axes.values()}) == 4
    assert [a.text for a in fig.layout.annotations] == [figures.TERM_LABELS[t] for t in figures.TERMS]


def test_one_component_reads_in_the_singular():
    assert "the first principal component of" in wording.target_sentence({"request": {"dims": [2, 2, 1]}})
