"""What an analysis will cost before it runs: expected seconds per stage (from stage speeds measured by
benchmarks/bench_stage_speeds.py) and the expected small-sample bias of the total (bits).

The speeds are for this project's reference machine (2 shared CPU cores); a GPU or an idle machine is
faster. Unknown models get no time estimate (None) rather than a made-up one.
"""

from __future__ import annotations

import math

# Measured 2026-12-07 on this project's 2-core machine shared with other sessions (load average 4.1-4.8), demo
# model, 400 questions: extraction 18.6-20.1 s (benchmarks/bench_stage_speeds.py at 200 questions: 40 ms a
# question; run_analysis of the default request: 19.8 and 20.1 s of extraction, 0.8-2.6 s of analysis). The
# figures of 2026-12-01 (85 ms a question; 0.94 s a layer for "auto", whose probe rarely trains flows now)
# made the default demo analysis 57 s instead of the ~22 s it takes, and its extraction share 0.67 instead
# of ~0.9. "flow" (flows always trained) was not re-measured: its figure is the old one.
#: Extraction seconds per question and run (baseline or knockout), by model.
EXTRACT_S_PER_QUESTION = {"demo": 0.047}
#: PID seconds per pooled layer and run for 400 questions, by Gaussianization mode, without bootstrap.
ANALYZE_S_PER_LAYER = {"none": 0.07, "copula": 0.06, "auto": 0.045, "flow": 0.94}
#: Extra seconds per pooled layer, run and bootstrap round for 400 questions (auto 0.0005, none 0.0004-0.0008,
#: copula 0.0011 measured).
BOOTSTRAP_S_PER_LAYER_ROUND = 0.001
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


def extract_share(request: dict, num_layers: int | None, default: float = 0.25,
                  overhead_s: float = OVERHEAD_S) -> float:
    """Fraction of the wall time extraction is expected to take (for a progress bar weighted by cost).
    `overhead_s`: the fixed costs around the stages (a worker's model load, queue and assembly; half of them
    counted with extraction); 0 where progress starts once the model is loaded and nothing is queued (the
    CLI's local run)."""
    if num_layers is None:
        num_layers = MODEL_LAYERS.get(request.get("model", "demo"), DEFAULT_LAYERS)
    cost = estimate(request, num_layers)
    if cost["total_s"] is None or cost["total_s"] <= 0:
        return default
    total = cost["total_s"] - OVERHEAD_S + overhead_s
    return min(0.98, max(0.05, (overhead_s / 2 + cost["extract_s"]) / total))


def describe_seconds(seconds: float | None) -> str:
    """"about 40 s", "about 3 min", "about 1.5 h"; "unknown" for None."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def weighted_progress(stage: str, fraction: float, extract_share_: float) -> float:
    """Overall progress 0..1 weighted by measured stage cost: extraction's own `fraction` fills
    0..`extract_share_` (its expected share of the time, extract_share), the analysis's the rest."""
    fraction = min(1.0, max(0.0, float(fraction)))
    if stage == "extract":
        return extract_share_ * fraction
    return extract_share_ + (1.0 - extract_share_) * fraction


def reweighted(fraction: float, nominal_extract_end: float, extract_share_: float) -> float:
    """A progress reported with a fixed split (extraction 0..`nominal_extract_end`, e.g. run_analysis's 0.3)
    moved onto the split by measured stage cost (extraction 0..`extract_share_`)."""
    fraction = min(1.0, max(0.0, float(fraction)))
    if fraction < nominal_extract_end:
        return weighted_progress("extract", fraction / nominal_extract_end, extract_share_)
    return weighted_progress("analyze", (fraction - nominal_extract_end) / (1.0 - nominal_extract_end),
                             extract_share_)


def eta_seconds(progress: float, elapsed_s: float, estimate_s: float | None = None,
                since_progress: float = 0.0) -> float | None:
    """Seconds left: from the pace so far once 5% is done (progress weighted by stage cost, so the pace holds
    across stages), before that what the cost estimate has left; None when neither is known. `elapsed_s` and
    the pace count from the moment progress was `since_progress` (e.g. the first report, after the model
    loaded)."""
    if progress >= 1.0:
        return 0.0
    moved = progress - since_progress
    if moved >= 0.05 and elapsed_s > 0:
        return elapsed_s * (1.0 - progress) / moved
    if estimate_s is not None:
        return max(0.0, estimate_s * (1.0 - since_progress) - elapsed_s)
    return None
