"""Knockout effect metrics (bits; definitions in docs/extraction.md).

Every delta is knockout - baseline, per pooled layer. Totals:
- trapped_unique_vision: mean delta of vision-unique information over the last third of layers;
- compensatory_synergy: mean delta of synergy over the layers the knockout can reach (after its first layer);
- information_cost: mean drop of total information (baseline - knockout) over those same layers;
- answer_probability_change (and _pct, relative to the baseline mean) and accuracy_change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")


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
    return effects
