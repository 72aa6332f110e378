"""Knockout effect metrics (bits; definitions in docs/extraction.md).

Every delta is knockout - baseline, per pooled layer. Totals:
- trapped_unique_vision: mean delta of vision-unique information over the last third of layers;
- compensatory_synergy: mean delta of synergy over the layers the knockout can reach (after its first layer);
- information_cost: mean drop of total information (baseline - knockout) over those same layers;
- answer_probability_change (and _pct, relative to the baseline mean) and accuracy_change.

With bootstrap draws in both runs' layer entries ("draws": (rounds, 5) plug-in PIDs of the same resampled
questions in both runs, pidcore.pipeline.layerwise), every per-layer delta and every metric gets a paired 95%
interval: the draws of knockout minus baseline, reflected about the estimate (pidcore.estimators.estimate); a delta
whose interval contains 0 is marked as within the noise. The answer metrics resample the same questions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pidcore.estimators.estimate import basic_interval, interval

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")

#: What each metric is, in plain words (shown beside it in the dashboard and the docs).
DESCRIPTIONS = {
    "trapped_unique_vision": "change of vision-only information in the last third of the layers (bits): "
                             "positive when cutting attention leaves visual information unused by the language side",
    "compensatory_synergy": "change of synergy (information only the two sources together give) in the layers "
                            "the knockout can reach (bits)",
    "information_cost": "drop of the total information about the answer in the layers the knockout can reach (bits)",
    "answer_probability_change": "change of the mean probability of the correct answer (absolute)",
    "answer_probability_change_pct": "change of the mean probability of the correct answer, relative to the "
                                     "baseline (%)",
    "accuracy_change": "change of the share of questions answered correctly (absolute)",
}


def last_third(num_layers: int) -> list[int]:
    """Indices of the last third of `num_layers` pooled layers (at least one)."""
    count = max(1, math.ceil(num_layers / 3))
    return list(range(num_layers - count, num_layers))


def reached_layers(num_layers: int, window: Sequence[int] | None) -> list[int]:
    """Pooled layers downstream of the knockout: decoder layer `first` outputs pooled layer first + 1."""
    first = 0 if window is None else int(window[0])
    return list(range(min(first + 1, num_layers - 1), num_layers))


def _values(layers, term: str) -> np.ndarray:
    return np.array([float(layer[term]) for layer in layers])


def knockout_effects(baseline_layers, knockout_layers, *, window: Sequence[int] | None = None,
                     baseline_p_correct=None, knockout_p_correct=None,
                     baseline_correct=None, knockout_correct=None) -> dict:
    """Per-layer deltas and the summary metrics from two runs' layer entries (dicts with TERMS, bits)."""
    if len(baseline_layers) != len(knockout_layers) or not baseline_layers:
        raise ValueError(f"baseline and knockout need the same non-zero number of layers, got "
                         f"{len(baseline_layers)} and {len(knockout_layers)}")
    deltas = {term: _values(knockout_layers, term) - _values(baseline_layers, term) for term in TERMS}
    num_layers = len(baseline_layers)
    late, reached = last_third(num_layers), reached_layers(num_layers, window)
    effects = {
        "trapped_unique_vision": float(deltas["unique_vision"][late].mean()),
        "compensatory_synergy": float(deltas["synergy"][reached].mean()),
        "information_cost": float(-deltas["total"][reached].mean()),
        "late_layers": late,
        "reached_layers": [reached[0], reached[-1]],
    }
    if baseline_p_correct is not None and knockout_p_correct is not None:
        before, after = float(np.mean(baseline_p_correct)), float(np.mean(knockout_p_correct))
        effects["answer_probability_change"] = after - before
        effects["answer_probability_change_pct"] = 100.0 * (after - before) / before if before > 0 else None
    if baseline_correct is not None and knockout_correct is not None:
        effects["accuracy_change"] = float(np.mean(knockout_correct)) - float(np.mean(baseline_correct))
    effects["per_layer"] = [{"layer": index, **{term: float(deltas[term][index]) for term in TERMS}}
                            for index in range(num_layers)]
    effects["descriptions"] = dict(DESCRIPTIONS)
    return effects


def _draws(layers) -> np.ndarray | None:
    """(layers, rounds, 5) bootstrap draws of layer entries, or None when any layer has none."""
    if not all(layer.get("draws") for layer in layers):
        return None
    return np.array([layer["draws"] for layer in layers], dtype=float)


def _interval(estimate: float, draws: np.ndarray, estimator: str) -> list[float]:
    return list(interval(estimate, draws, estimator))


def add_intervals(effects: dict, baseline_layers, knockout_layers, *, estimator: str = "corrected",
                  rows=None, baseline_p_correct=None, knockout_p_correct=None, baseline_correct=None,
                  knockout_correct=None) -> dict:
    """``effects`` (from knockout_effects) with paired 95% intervals: per layer ``ci`` and ``within_noise``
    for each term, ``intervals`` for each metric. ``rows``: the bootstrap's resampled question indices
    (the same as behind the draws), for the answer metrics. Unchanged when the layers carry no draws."""
    base, knocked = _draws(baseline_layers), _draws(knockout_layers)
    if base is None or knocked is None or base.shape != knocked.shape:
        return effects
    delta = knocked - base  # (layers, rounds, 5): the same questions in both runs
    columns = {term: index for index, term in enumerate(TERMS)}  # FIELDS order of the draws
    for entry in effects["per_layer"]:
        layer = entry["layer"]
        entry["ci"] = {term: _interval(entry[term], delta[layer, :, columns[term]], estimator) for term in TERMS}
        entry["within_noise"] = {term: bool(lo <= 0.0 <= hi) for term, (lo, hi) in entry["ci"].items()}
    late = effects["late_layers"]
    reached = list(range(effects["reached_layers"][0], effects["reached_layers"][1] + 1))
    intervals = {
        "trapped_unique_vision": _interval(effects["trapped_unique_vision"],
                                           delta[late, :, columns["unique_vision"]].mean(axis=0), estimator),
        "compensatory_synergy": _interval(effects["compensatory_synergy"],
                                          delta[reached, :, columns["synergy"]].mean(axis=0), estimator),
        "information_cost": _interval(effects["information_cost"],
                                      -delta[reached, :, columns["total"]].mean(axis=0), estimator),
    }
    if rows is not None:
        for name, before, after in (("answer_probability_change", baseline_p_correct, knockout_p_correct),
                                    ("accuracy_change", baseline_correct, knockout_correct)):
            if before is None or after is None or effects.get(name) is None:
                continue
            change = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
            if not np.all(np.isfinite(change)):
                continue
            draws = np.array([change[r].mean() for r in rows])
            intervals[name] = list(basic_interval(effects[name], draws))
            if name == "answer_probability_change" and effects.get("answer_probability_change_pct") is not None:
                before_mean = np.array([np.asarray(before, dtype=float)[r].mean() for r in rows])
                relative = 100.0 * draws / np.where(before_mean > 0, before_mean, np.nan)
                if np.all(np.isfinite(relative)):
                    intervals["answer_probability_change_pct"] = list(
                        basic_interval(effects["answer_probability_change_pct"], relative))
    effects["intervals"] = intervals
    effects["interval_note"] = ("paired 95% bootstrap intervals: the same resampled questions in both runs; "
                                "a delta whose interval contains 0 is within the estimator's noise")
    return effects
