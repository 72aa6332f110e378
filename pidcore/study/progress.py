"""A study's progress weighted by what its stages cost, and the time left.

Each stage of a part (model x task) counts in proportion to its measured cost on the demo model (CPU seconds
on a quiet 2-core machine, benchmarks/bench_study.py; docs/study.md): the extraction by questions x distinct
runs, each analysis by the layers it must analyse (a knockout run's layers before its window take the
baseline's entries at no cost), its bootstrap rounds, and its flows when its Gaussianization plan trains them.
Only the ratios matter for the bars; the time left is extrapolated from the pace so far (``eta_seconds``).
"""

from __future__ import annotations

#: One question through one distinct run of the extraction (prefix reuse included), demo model, 1 thread.
EXTRACT_S_PER_QUESTION_RUN = 0.003
#: One layer of one analysis without flows or bootstrap (copula, PCA, PID, bias correction), 400 questions.
LAYER_S = 0.04
#: One bootstrap round of one layer (shared coordinates; cross-fitted flows take two covariances a round).
BOOTSTRAP_ROUND_S = 0.0004
#: One layer's cross-fitted joint flows (both folds), 400 questions.
FLOW_LAYER_S = 2.5
#: The questions the costs above were measured at; analysis costs scale about linearly with n.
MEASURED_N = 400


def analysis_cost(layers: int, bootstrap: int, flows: bool | None, n: int = MEASURED_N) -> float:
    """Seconds (on the demo's scale) of analysing `layers` layers with `bootstrap` rounds; `flows` None: not
    known yet (half the flows' cost, the expectation over the plans seen on the demo)."""
    scale = max(int(n), 1) / MEASURED_N
    flow = FLOW_LAYER_S * (0.5 if flows is None else float(bool(flows)))
    rounds = BOOTSTRAP_ROUND_S * int(bootstrap) * (2 if flows else 1)
    return max(int(layers), 0) * scale * (LAYER_S + rounds + flow)


def expected_flows(request, recipe: str) -> bool | None:
    """Whether a recipe's analyses are expected to train flows before their plan is made: per the mode, and
    for "auto" what the demo's plans chose (the seed recipe's clustered latents: flows; pidflow's: either)."""
    mode = request.gaussianize
    if mode in ("none", "copula"):
        return False
    if mode == "flow":
        return True
    return True if recipe == "seed" else None


def reached(num_layers: int, knockout: dict | None, knockout_target: str = "baseline") -> int:
    """The pooled layers a run must analyse (of num_layers + 1): all for the baseline (or with the run's own
    target), else those from its window's first layer on (pidcore.pipeline.analysis.differing_layers)."""
    if knockout is None or knockout_target != "baseline":
        return num_layers + 1
    return num_layers - int(knockout["layers"][0])


def part_costs(request, num_layers: int, runs: list) -> dict:
    """{"extract": s, "analyses": s} of one part of `request` on a model of `num_layers` decoder layers with
    `runs` (pidcore.study.run.plan_runs): the estimate before its extraction."""
    distinct = {run.key: run.knockout for run in runs}
    extract = EXTRACT_S_PER_QUESTION_RUN * request.n_questions * len(distinct)
    analyses = sum(analysis_cost(reached(num_layers, spec, request.knockout_target), request.bootstrap,
                                 expected_flows(request, recipe), request.n_questions)
                   for recipe in request.recipes for spec in distinct.values())
    return {"extract": extract, "analyses": analyses}


def extract_share(request, num_layers: int = 6) -> float:
    """The share of a part's progress bar its extraction takes (the rest: its analyses), from part_costs;
    `num_layers` the model's decoder layers when known (default: the demo's 6)."""
    from pidcore.study.run import plan_runs

    costs = part_costs(request, num_layers, plan_runs(request, num_layers))
    total = costs["extract"] + costs["analyses"]
    return min(max(costs["extract"] / total, 0.02), 0.98) if total > 0 else 0.5


def eta_seconds(progress: float, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far (elapsed x (1 - p) / p): None before 1% or after the end."""
    if progress is None or not 0.01 <= progress < 1.0 or elapsed_s <= 0:
        return None
    return elapsed_s * (1.0 - progress) / progress

