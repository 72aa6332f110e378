"""The dashboard says what the numbers are: the estimator line under each plot, paired interval bands and
within-noise markers on the knockout difference plot, intervals beside every knockout effect."""

from __future__ import annotations

from app.ui import callbacks, figures, wording
from tests.ui.demo_result import make_document

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")


def _with_intervals(document: dict) -> dict:
    effects = document["effects"] or {}
    document["effects"] = effects
    runs = document["runs"]
    if runs.get("knockout"):
        effects["per_layer"] = [{"layer": k["layer"], **{t: k[t] - b[t] for t in TERMS}}
                                for b, k in zip(runs["baseline"]["layers"], runs["knockout"]["layers"], strict=True)]
    for entry in effects.get("per_layer", []):
        quiet = entry["layer"] <= 1
        entry["ci"] = {t: [entry[t] - 0.1, entry[t] + 0.1] if quiet else [entry[t] + 0.05, entry[t] + 0.2]
                       for t in TERMS}
        entry["within_noise"] = dict.fromkeys(TERMS, quiet)
    effects["intervals"] = {"information_cost": [-0.02, 0.3], "trapped_unique_vision": [0.1, 0.2]}
    effects["interval_note"] = "paired 95% bootstrap intervals"
    document["estimates"] = {"estimator": "corrected", "intervals": "95% basic bootstrap intervals",
                             "knockout_target": "knockout run analysed against the baseline's Y"}
    return document


def test_difference_plot_has_paired_bands_and_open_markers_within_noise():
    document = _with_intervals(make_document({"tasks": ["color"], "knockout": {"edges": ["image->question"],
                                                                              "layers": [1, 2]}}))
    fig = figures.difference_figure(document)
    bands = [trace for trace in fig.data if str(trace.meta).startswith("ci:")]
    assert {trace.meta for trace in bands} == {f"ci:{t}" for t in TERMS}
    total = next(trace for trace in fig.data if trace.meta == "total")
    symbols = list(total.marker.symbol)
    assert symbols[:2] == ["circle-open", "circle-open"] and set(symbols[2:]) == {"circle"}
    assert "within noise" in total.customdata[0] and "within noise" not in total.customdata[2]


def test_effects_table_shows_intervals_and_the_noise():
    document = _with_intervals(make_document({"tasks": ["color"], "knockout": {"edges": ["image->question"],
                                                                              "layers": [1, 2]}}))
    text = str(callbacks.effects_table(document))
    assert "95% interval" in text and "within noise" in text and "paired 95% bootstrap intervals" in text
    assert "descriptions" not in text and "interval_note" not in text


def test_method_line_names_the_estimator_and_the_bands():
    document = _with_intervals(make_document({"tasks": ["color"]}))
    line = wording.method_note(document)
    assert line.startswith("Bias-corrected estimates") and "95% bootstrap intervals" in line
    document["estimates"] = {"estimator": "plugin", "intervals": None}
    assert "not bias-corrected" in wording.method_note(document) and "bootstrap was 0" in wording.method_note(document)


def test_a_part_estimated_below_zero_is_stacked_as_zero_and_its_hover_says_so():
    document = make_document({"tasks": ["color"]})
    layer = document["runs"]["baseline"]["layers"][2]
    layer["synergy"] = -0.01
    fig = figures.stacked_figure(document, "baseline")
    synergy = next(trace for trace in fig.data if trace.meta == "synergy")
    assert synergy.y[2] == 0.0 and "below 0" in synergy.customdata[2] and "-0.010" in synergy.customdata[2]
