"""The analysis CSV (issue 18, smaller items): knockout edges and window on every knockout row, and the
knockout - baseline delta rows with their paired intervals."""

import csv
import io

from app.service import AnalysisService
from app.settings import Settings

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")


def _layers(scale):
    return [{"layer": i, **{t: scale * (i + 1) for t in TERMS},
             "ci": {t: [scale * (i + 1) - 0.1, scale * (i + 1) + 0.1] for t in TERMS}} for i in range(3)]


def test_the_csv_names_the_cut_and_carries_the_deltas(monkeypatch):
    service = AnalysisService(Settings(redis_url="redis://127.0.0.1:1/0"))  # no Redis needed: the document is given
    document = {"request": {"model": "demo", "tasks": ["color"],
                            "knockout": {"edges": ["image->question", "image->last"], "layers": [0, 1]}},
                "model": {"name": "demo"},
                "runs": {"baseline": {"layers": _layers(1.0)}, "knockout": {"layers": _layers(0.5)}},
                "effects": {"per_layer": [{"layer": i, **{t: -0.5 * (i + 1) for t in TERMS},
                                           "ci": {t: [-0.5 * (i + 1) - 0.05, -0.5 * (i + 1) + 0.05] for t in TERMS}}
                                          for i in range(3)]}}
    monkeypatch.setattr(service, "_document", lambda analysis_id: document)
    rows = list(csv.DictReader(io.StringIO(service.result_csv("a1"))))
    assert [r["run"] for r in rows] == ["baseline"] * 3 + ["knockout"] * 3 + ["delta"] * 3
    assert {(r["run"], r["knockout_edges"], r["knockout_window"]) for r in rows} == {
        ("baseline", "", ""), ("knockout", "image->question+image->last", "0-1"),
        ("delta", "image->question+image->last", "0-1")}
    delta = rows[-1]
    assert float(delta["synergy"]) == -1.5 and float(delta["synergy_lo"]) == -1.55 and float(delta["total_hi"]) == -1.45
