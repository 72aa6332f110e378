"""Per-coordinate Gaussian copula: normal scores through the empirical CDF (no training, numpy only).

The map x_j -> Phi^-1(F_j(x_j)) is monotone per coordinate, so it keeps all information (bits are
invariant under invertible maps of each variable) and turns any element-wise warp of a Gaussian back
into a Gaussian. It is unsupervised (it sees one variable only), so it may be fitted on all rows.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri


def normal_scores(x: np.ndarray) -> np.ndarray:
    """(n, d) normal scores Phi^-1((rank - 0.5) / n) per column (ties share their average rank),
    standardised to mean 0 and variance 1; a constant column stays constant (0). One argsort of contiguous
    rows (the transpose); tied runs (common in float16 features) get their average rank in one pass."""
    x = np.asarray(x)
    n = len(x)
    rows = np.ascontiguousarray(x.T)  # sorting contiguous rows is several times faster than columns
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    if starts.all():  # no ties: the ranks are the positions
        levels = np.broadcast_to(ndtri((np.arange(n) + 0.5) / n), ordered.shape)
    else:  # each run of equal values takes the mean of its positions
        run = np.cumsum(starts.ravel()) - 1
        positions = np.broadcast_to(np.arange(n, dtype=float), ordered.shape).ravel()
        mean = np.bincount(run, weights=positions) / np.bincount(run)
        levels = ndtri((mean[run].reshape(ordered.shape) + 0.5) / n)
    scores = np.empty(rows.shape)
    np.put_along_axis(scores, order, levels, axis=1)
    scores = scores.T
    spread = scores.std(axis=0)
    return np.where(spread > 0, (scores - scores.mean(axis=0)) / np.where(spread > 0, spread, 1.0), 0.0)


def empirical_log_density(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(n_test, d) log densities (nats) of ``test`` under a per-column piecewise-constant density through
    every m-th order statistic of ``train`` (m ~ sqrt(n_train) / 2, so each piece holds m training
    points); test values outside the training range get the density of the edge piece."""
    n = len(train)
    m = max(2, int(round(np.sqrt(n) / 2)))
    ordered = np.sort(train.T, axis=1).T  # sorting contiguous rows is several times faster
    index = np.unique(np.r_[np.arange(0, n, m), n - 1])
    knots, levels = ordered[index], (index + 0.5) / n  # (K, d), (K,)
    widths = np.diff(knots, axis=0)
    scale = train.std(axis=0) + 1e-300
    widths = np.maximum(widths, 1e-6 * scale)
    density = np.diff(levels)[:, None] / widths  # (K - 1, d)
    piece = np.clip(_count_at_most(knots, test) - 1, 0, len(index) - 2)
    return np.log(np.take_along_axis(density, piece, axis=0))


def _count_at_most(knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per column, how many knots are <= each value (searchsorted(side="right") for all columns at once)."""
    k = len(knots)
    # knots first among equals; contiguous rows sort several times faster than columns
    order = np.argsort(np.concatenate([knots, values]).T, axis=1, kind="stable").T
    counts_sorted = np.cumsum(order < k, axis=0)
    counts = np.empty(values.shape, dtype=int)
    is_value = order >= k
    columns = np.broadcast_to(np.arange(values.shape[1]), order.shape)
    counts[order[is_value] - k, columns[is_value]] = counts_sorted[is_value]
    return counts
