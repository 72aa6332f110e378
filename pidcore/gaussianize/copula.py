"""Per-coordinate Gaussian copula: normal scores through the empirical CDF (no training, numpy only).

The map x_j -> Phi^-1(F_j(x_j)) is monotone per coordinate, so it keeps all information (bits are
invariant under invertible maps of each variable) and turns any element-wise warp of a Gaussian back
into a Gaussian. It is unsupervised (it sees one variable only), so it may be fitted on all rows.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

#: Cached per n: the untied levels Phi^-1((k + 0.5) / n) of positions k = 0..n-1, their mean and mean square.
_TABLES: dict = {}


def _table(n: int) -> tuple[np.ndarray, float, float]:
    table = _TABLES.get(n)
    if table is None:
        if len(_TABLES) >= 32:
            _TABLES.clear()
        levels = ndtri((np.arange(n) + 0.5) / n)
        levels.flags.writeable = False
        table = _TABLES[n] = (levels, float(levels.mean()), float(np.mean(levels * levels)))
    return table


#: Columns per block of normal_scores: a block's keys (n x BLOCK x 8 bytes) stay in cache at n ~ 1,000.
BLOCK = 256
#: Dtypes whose every value a float32 holds exactly (their float32 keys need no check).
_EXACT_IN_FLOAT32 = {np.dtype(t) for t in (np.float16, np.float32, np.int8, np.uint8, np.int16, np.uint16)}
_LOW = np.uint64(0xFFFFFFFF)


def normal_scores(x: np.ndarray) -> np.ndarray:
    """(n, d) normal scores Phi^-1((rank - 0.5) / n) per column (ties share their average rank),
    standardised to mean 0 and variance 1; a constant column stays constant (0).

    Works on blocks of BLOCK columns (their working arrays stay in cache). Each column is sorted once, as
    64-bit keys (its values' float32 bit patterns in sortable form above the row index: one in-place sort
    instead of an argsort and a gather); where float32 cannot hold the input exactly, every pair of neighbours
    the keys call tied is checked on the input itself, and a column with a false tie is argsorted exactly.
    An untied element's level is a table entry of its sorted position (cached per n); only the elements of
    tied runs (a few per cent of float16 features) get their run's average rank. Each column's mean and
    variance follow from the table's and those elements' corrections, so the scores are standardised in the
    same pass that scatters them back (the output is the transpose of a (d, n) array)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype.itemsize > 8:
        x = x.astype(float)
    n, d = x.shape
    scores = np.empty((d, n))
    for first in range(0, d, BLOCK):
        columns = slice(first, min(first + BLOCK, d))
        _standardised_levels(*_sorted(x, columns), out=scores[columns])
    return scores.T


def _sorted(x: np.ndarray, columns: slice) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) argsort of each of ``x``'s ``columns`` (k of them) and (k, n - 1) whether each sorted value equals
    its predecessor."""
    n = len(x)
    view = x[:, columns].T
    if n >= 2**32:  # the row index would not fit beside the key
        order = np.argsort(view, axis=1)
        ordered = np.take_along_axis(view, order, axis=1)
        return order, ordered[:, 1:] == ordered[:, :-1]
    values = np.empty(view.shape, dtype=np.float32)
    np.copyto(values, view, casting="unsafe")
    values += np.float32(0.0)  # -0 becomes +0: equal values get equal keys
    bits = values.view(np.uint32)
    flip = bits >> np.uint32(31)  # negative: flip every bit, else the sign bit (unsigned order = float order)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    bits ^= flip
    keys = bits.astype(np.uint64)
    del values, bits, flip
    keys <<= np.uint64(32)
    keys |= np.arange(n, dtype=np.uint64)
    keys.sort(axis=1)
    high = keys >> np.uint64(32)
    equal = high[:, 1:] == high[:, :-1]
    del high
    keys &= _LOW
    order = keys.view(np.int64)
    if x.dtype not in _EXACT_IN_FLOAT32:  # float32 may have merged distinct values: check the tied neighbours
        rows, positions = np.nonzero(equal)
        if len(rows):
            column = rows + columns.start
            false = x[order[rows, positions + 1], column] != x[order[rows, positions], column]
            if false.any():
                bad = np.unique(rows[false])
                exact = np.ascontiguousarray(view[bad])
                order[bad] = np.argsort(exact, axis=1)
                ordered = np.take_along_axis(exact, order[bad], axis=1)
                equal[bad] = ordered[:, 1:] == ordered[:, :-1]
    return order, equal


def _standardised_levels(order: np.ndarray, equal: np.ndarray, out: np.ndarray) -> None:
    """Into ``out`` (k, n): the standardised normal scores of k columns in their original row order, from their
    argsort and sorted-neighbour ties (see _sorted)."""
    k, n = order.shape
    levels, mean, square = _table(n)
    sums, squares = np.full(k, n * mean), np.full(k, n * square)  # per column, before ties
    tied = np.flatnonzero(equal.any(axis=1))
    if len(tied):
        sub = equal if len(tied) == k else equal[tied]
        member = np.zeros((len(tied), n), dtype=bool)  # the elements of tied runs
        member[:, 1:] = sub
        member[:, :-1] |= sub
        row, position = np.divmod(np.flatnonzero(member), n)  # row-major: each run is contiguous
        start = np.ones(len(row), dtype=bool)  # a run starts where an element does not tie with its predecessor
        inner = position > 0
        start[inner] = ~sub[row[inner], position[inner] - 1]
        run = np.cumsum(start) - 1
        average = np.bincount(run, weights=position) / np.bincount(run)  # the run's mean position
        level = ndtri((average[run] + 0.5) / n)
        untied = levels[position]
        sums[tied] += np.bincount(row, weights=level - untied, minlength=len(tied))
        squares[tied] += np.bincount(row, weights=level * level - untied * untied, minlength=len(tied))
    centre = sums / n
    variance = squares / n - centre * centre
    variance[equal.all(axis=1)] = 0.0  # a constant column (one run)
    scale = np.where(variance > 0, 1.0 / np.sqrt(np.where(variance > 0, variance, 1.0)), 0.0)
    values = (levels[None, :] - centre[:, None]) * scale[:, None]  # in sorted order
    if len(tied):
        rows = tied[row]
        values[rows, position] = (level - centre[rows]) * scale[rows]
    np.put_along_axis(out, order, values, axis=1)


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
