"""What an analysis will cost before it runs: expected seconds per stage (from stage speeds measured by
benchmarks/bench_stage_speeds.py) and the expected small-sample bias of the total (bits).

The speeds are for this project's reference machine (2 shared CPU cores); a GPU or an idle machine is
faster. Unknown models get no time estimate (None) rather than a made-up one.
"""

from __future__ import annotations

import math

# Measured 2026-12-01 by benchmarks/bench_stage_speeds.py (200 questions, demo model, 2 cores at load ~10,
# so on the slow side); PID figures scaled to 400 questions (linear in n, conservative for the flows).
#: Extraction seconds per question and run (baseline or knockout), by model.
EXTRACT_S_PER_QUESTION = {"demo": 0.085}
#: PID seconds per pooled layer and run for 400 questions, by Gaussianization mode (flows dominate "auto").
ANALYZE_S_PER_LAYER = {"none": 0.026, "copula": 0.026, "auto": 0.94, "flow": 0.94}
#: Extra seconds per pooled layer, run and bootstrap round for 400 questions.
BOOTSTRAP_S_PER_LAYER_ROUND = 0.006
#: Fixed costs per analysis: loading the model in the worker, queueing, assembling the result (seconds).
OVERHEAD_S = 8.0
#: Decoder layers assumed when the caller does not know them (extract_share only).
MODEL_LAYERS = {"demo": 6}
DEFAULT_LAYERS = 32
REFERENCE_QUESTIONS = 400
FOLDS = 2  # cross-fitting halves: each fold sees about half of the questions


def expected_bias_bits(n_total: int, dims: tuple[int, int, int] | list[int]) -> float:
    """Upward small-sample bias of the plug-in total, about (d_v + d_l) d_y / (2 m ln 2) bits for m rows per
    fit; with two folds m = n / 2, so (d_v + d_l) d_y / (n ln 2)."""
    d_v, d_l, d_y = dims
    return (d_v + d_l) * d_y / (max(n_total, 1) * math.log(2))


def estimate(request: dict, num_layers: int | None) -> dict:
    """Expected cost of a request (dict as in pidcore.pipeline.analysis.AnalysisRequest) on a model with
    `num_layers` decoder layers: {"extract_s", "analyze_s", "total_s" (None when unknown), "runs",
    "n_total", "bias_bits"}. Extraction share of the time is extract_s / total_s."""
    tasks = request.get("tasks") or ["color"]
    n_total = int(request.get("n_questions") or REFERENCE_QUESTIONS) * len(tasks)
    runs = 2 if request.get("knockout") else 1
    dims = request.get("dims") or (8, 8, 4)
    per_question = EXTRACT_S_PER_QUESTION.get(request.get("model", "demo"))
    extract_s = None if per_question is None else per_question * n_total * runs
    mode = request.get("gaussianize", "auto")
    mode = {True: "auto", False: "none"}.get(mode, mode)
    analyze_s = None
    if num_layers is not None:
        scale = n_total / REFERENCE_QUESTIONS
        per_layer = ANALYZE_S_PER_LAYER.get(mode, ANALYZE_S_PER_LAYER["auto"])
        per_layer += BOOTSTRAP_S_PER_LAYER_ROUND * int(request.get("bootstrap") or 0)
        analyze_s = per_layer * scale * (num_layers + 1) * runs
    total = None if extract_s is None or analyze_s is None else OVERHEAD_S + extract_s + analyze_s
    return {"extract_s": extract_s, "analyze_s": analyze_s, "total_s": total, "runs": runs, "n_total": n_total,
            "bias_bits": expected_bias_bits(n_total, dims)}


def extract_share(request: dict, num_layers: int | None, default: float = 0.25) -> float:
    """Fraction of the wall time extraction is expected to take (for a progress bar weighted by cost)."""
    if num_layers is None:
        num_layers = MODEL_LAYERS.get(request.get("model", "demo"), DEFAULT_LAYERS)
    cost = estimate(request, num_layers)
    if cost["total_s"] is None or cost["total_s"] <= 0:
        return default
    return min(0.95, max(0.05, (OVERHEAD_S / 2 + cost["extract_s"]) / cost["total_s"]))


def describe_seconds(seconds: float | None) -> str:
    """"about 40 s", "about 3 min", "about 1.5 h"; "unknown" for None."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
