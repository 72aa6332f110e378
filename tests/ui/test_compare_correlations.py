"""The Compare tab's correlations (issue 18.5): r with an interval over the layers, or not at all where a
trajectory barely varies; the server's analyses named by model, tasks and run in the picker."""

import pytest

from app.ui import compare_callbacks as compare

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")


def _document(values: dict, half_width: float = 0.01) -> dict:
    layers = []
    for index in range(7):
        entry = {"layer": index, **{term: values[term][index] for term in TERMS}}
        entry["total"] = sum(entry[term] for term in TERMS)
        entry["ci"] = {term: [entry[term] - half_width, entry[term] + half_width] for term in (*TERMS, "total")}
        layers.append(entry)
    return {"request": {"model": "demo", "tasks": ["color"]}, "model": {"name": "demo", "num_layers": 6},
            "runs": {"baseline": {"layers": layers}}}


RISING = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
FLAT = [0.50, 0.505, 0.50, 0.495, 0.50, 0.505, 0.50]  # range 0.01 bits, intervals +-0.01


def test_r_comes_with_an_interval_or_not_at_all():
    first = _document({"redundancy": RISING, "unique_vision": RISING[::-1], "unique_language": RISING, "synergy": FLAT})
    second = _document({"redundancy": [v * 1.1 for v in RISING], "unique_vision": RISING, "unique_language": RISING,
                        "synergy": FLAT[::-1]})
    rows = {row["term"]: row for row in compare.correlation_rows(first, second)}
    assert rows["redundancy"]["r"] == pytest.approx(1.0) and rows["redundancy"]["ci"] is None  # r = 1: no z
    assert rows["unique_vision"]["r"] == pytest.approx(-1.0)
    assert rows["synergy"]["r"] is None and rows["synergy"]["text"].startswith(
        "not given: the trajectory barely varies across layers (range 0.010 bits")
    noisy = _document({"redundancy": RISING, "unique_vision": RISING, "unique_language": RISING, "synergy": RISING})
    other = _document({"redundancy": [0.1, 0.3, 0.2, 0.5, 0.4, 0.7, 0.6], "unique_vision": RISING,
                       "unique_language": RISING, "synergy": RISING})
    row = next(r for r in compare.correlation_rows(noisy, other) if r["term"] == "redundancy")
    assert 0.8 < row["r"] < 1 and row["ci"][0] < row["r"] < row["ci"][1] < 1
    assert row["text"] == f"{row['r']:+.3f} [{row['ci'][0]:+.2f}, {row['ci'][1]:+.2f}] over 7 layers"


class Listing:
    settings = None

    def status(self, analysis_id):
        return {"id": analysis_id, "state": "succeeded"}

    def list_analyses(self, token, offset=0, limit=20):
        return {"total": 2, "offset": 0, "limit": limit, "items": [
            {"id": "a", "state": "succeeded", "created_at": 0, "model": "demo", "tasks": ["color", "shape"],
             "knockout": None},
            {"id": "b", "state": "succeeded", "created_at": 0, "model": "demo", "tasks": ["color"],
             "knockout": {"edges": ["image->question"], "layers": [1, 3]}}]}


def test_the_picker_names_model_task_and_run():
    labels = [c["label"] for c in compare.compare_candidates(Listing(), [], token=None)]
    assert labels[0].startswith("on the server, ") and labels[0].endswith(": demo · color, shape · baseline only")
    assert labels[1].endswith(": demo · color · knockout image->question [1, 3]")
