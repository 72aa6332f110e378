"""The Compare tab draws what its legend says (issue 18.5): each trace draws the run chosen for it (baseline or
knockout) and the legend names that run; analyses of equal depth share the layer index, of different depth
relative depth. Through the tab's callback body (comparison_view) on documents with known values."""

import pytest

from app.ui import compare_callbacks as compare
from tests.ui.demo_result import layer_terms, make_document

KNOCKOUT = {"edges": ["image->question"], "layers": [1, 3]}


class Service:
    settings = None

    def __init__(self, documents):
        self.documents = documents

    def result(self, analysis_id):
        return self.documents[analysis_id]


@pytest.fixture
def service():
    return Service({"cut": make_document({"model": "demo", "tasks": ["color"], "knockout": KNOCKOUT}),
                    "plain": make_document({"model": "demo", "tasks": ["shape"]}),
                    "deep": make_document({"model": "demo", "tasks": ["shape"]}, num_layers=12)})


def _trace(fig, meta):
    return next(t for t in fig.data if t.meta == meta)


def test_the_baseline_drawn_is_named_baseline_not_knockout(service):
    fig, table, note, this_options, other_options = compare.comparison_view(service, "cut", "plain")
    this = _trace(fig, "this:unique_vision")
    assert list(this.y) == pytest.approx([layer_terms(i)[1] for i in range(7)])  # the baseline's U_vision
    assert this.name == "this: demo · color · baseline" and "knockout" not in this.name
    assert _trace(fig, "other:unique_vision").name == "other: demo · shape · baseline"
    assert note is None and "baselines" in table.children[0].children
    assert [o.get("disabled", False) for o in this_options] == [False, False]
    assert other_options[1]["disabled"] and "none in this analysis" in other_options[1]["label"]


def test_the_knockout_chosen_is_drawn_and_named_with_its_window(service):
    fig, table, note, *_ = compare.comparison_view(service, "cut", "plain", "knockout", "baseline")
    this = _trace(fig, "this:unique_vision")
    assert list(this.y) == pytest.approx([layer_terms(i, True)[1] for i in range(7)])  # baseline + 0.1
    assert list(_trace(fig, "this:synergy").y) == pytest.approx([layer_terms(i, True)[3] for i in range(7)])
    assert this.name == "this: demo · color · knockout image->question, decoder layers 1-3"
    assert list(_trace(fig, "other:unique_vision").y) == pytest.approx([layer_terms(i)[1] for i in range(7)])
    assert table.children[0].children.endswith("this analysis's knockout against the other's baseline)")
    rows = {row.children[0].children: row.children[1].children for row in table.children[1].children[0].children}
    assert rows[compare.figures.TERM_LABELS["unique_vision"]].startswith("+1.000")  # knockout = baseline + 0.1
    assert note is None


def test_a_knockout_asked_of_an_analysis_without_one_draws_its_baseline_and_says_so(service):
    fig, _table, note, *_ = compare.comparison_view(service, "cut", "plain", "knockout", "knockout")
    other = _trace(fig, "other:unique_vision")
    assert other.name == "other: demo · shape · baseline"
    assert list(other.y) == pytest.approx([layer_terms(i)[1] + 0.0 for i in range(7)])
    assert note == "The other analysis has no knockout run: its baseline is drawn."


def test_equal_depths_share_the_layer_index_and_different_depths_relative_depth(service):
    fig, *_ = compare.comparison_view(service, "cut", "plain")
    assert list(_trace(fig, "this:redundancy").x) == list(range(7)) == list(_trace(fig, "other:redundancy").x)
    assert fig.layout.xaxis.title.text == "layer (0 = embeddings)" and "(layer)" in fig.layout.title.text
    deep, *_ = compare.comparison_view(service, "cut", "deep")
    assert list(_trace(deep, "this:redundancy").x) == pytest.approx([i / 6 for i in range(7)])
    assert list(_trace(deep, "other:redundancy").x) == pytest.approx([i / 12 for i in range(13)])
    assert deep.layout.xaxis.title.text == "relative depth"


def test_nothing_to_compare_yet():
    fig, table, note, *_ = compare.comparison_view(Service({}), "cut", "")
    assert table is None and note is None and fig.layout.annotations[0].text.startswith("Pick or paste")


def test_the_tab_wires_a_run_picker_per_trace():
    from app.ui import create_dash_app
    from tests.ui.test_plotly_bundle import NoService

    app = create_dash_app(NoService())
    (key,) = [k for k in app.callback_map if "comparison.figure" in k and "correlations.children" in k]
    inputs = [f"{i['id']}.{i['property']}" for i in app.callback_map[key]["inputs"]]
    assert inputs[-2:] == ["compare-run-this.value", "compare-run-other.value"]
    assert "compare-run-other.options" in key
