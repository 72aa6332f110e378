"""What the PID Flow pipeline can estimate, checked before any work, with messages that say what to change;
and a scale-free copy of each input (PID is invariant to scaling a variable, float64 arithmetic is not).
"""

from __future__ import annotations

import math

import numpy as np

#: Seeds go to numpy and torch (with small offsets per variable): 0 <= seed <= MAX_SEED.
MAX_SEED = 2**32 - 1
#: Rows a fold needs beyond its latent dimensions: centred, n rows have rank n - 1.
SPARE_ROWS = 1
#: A bootstrap resample of m rows keeps about 0.63 m distinct ones; a fold must be large enough that even a
#: resample this many standard deviations below that mean keeps more distinct rows than latent dimensions
#: (else its covariance is singular). 6 sd: about one failed resample in 1e9.
BOOTSTRAP_MARGIN_SD = 6.0


def _distinct_rows(m: int) -> tuple[float, float]:
    """Mean and standard deviation of the number of distinct rows in a resample of m rows from m."""
    keep, keep2 = (1 - 1 / m) ** m, (1 - 2 / m) ** m
    mean = m * (1 - keep)
    variance = m * (m - 1) * keep2 + m * keep - m * m * keep**2
    return mean, math.sqrt(max(variance, 0.0))


def _integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def rows_needed(latent_dims: int, bootstrap: int) -> int:
    """Rows per fold needed for ``latent_dims`` = d1 + d2 + dy latent dimensions (more with bootstrap)."""
    rows = latent_dims + SPARE_ROWS
    if bootstrap <= 0:
        return rows
    m = rows
    while True:
        mean, sd = _distinct_rows(m)
        if mean - BOOTSTRAP_MARGIN_SD * sd >= rows:
            return m
        m += 1


def check_estimable(n: int, feature_dims: tuple[int, int, int], dims: tuple[int, int, int], *, folds: int,
                    bootstrap: int, seed: int) -> None:
    """ValueError (saying what to change) unless ``n`` samples with ``feature_dims`` features per variable
    can be reduced to ``dims`` and estimated with ``folds``-fold cross-fitting and ``bootstrap`` rounds."""
    folds = _integer(folds, "folds")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    bootstrap = _integer(bootstrap, "bootstrap")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0 rounds (0 for no intervals), got {bootstrap}")
    seed = _integer(seed, "seed")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED} (2**32 - 1), got {seed}")
    if n < 2 * folds + 2:
        raise ValueError(f"too few samples: n={n} (need at least {2 * folds + 2})")
    used = [min(int(d), int(f)) for d, f in zip(dims, feature_dims, strict=True)]
    per_fold = n // folds
    need = rows_needed(sum(used), bootstrap)
    if per_fold >= need:
        return
    with_bootstrap = f" and {bootstrap} bootstrap rounds" if bootstrap > 0 else ""
    fix = f"use n >= {need * folds}"
    smaller = _smaller_dims(used, per_fold, bootstrap)
    if smaller is not None:
        fix += f", or smaller dims such as {smaller}"
    if bootstrap > 0 and per_fold >= rows_needed(sum(used), 0):
        fix += ", or bootstrap=0"
    raise ValueError(f"too few samples for dims {tuple(used)}: n={n} gives {per_fold} per fold with folds={folds}"
                     f"{with_bootstrap}, and each fold needs at least {need} for {sum(used)} latent dimensions; "
                     f"{fix}")


def _smaller_dims(used: list[int], per_fold: int, bootstrap: int) -> tuple[int, int, int] | None:
    """The largest dims (shrunk together, each >= 1) that ``per_fold`` rows support, or None."""
    dims = list(used)
    while rows_needed(sum(dims), bootstrap) > per_fold:
        if max(dims) == 1:
            return None
        dims[dims.index(max(dims))] -= 1
    return tuple(dims)


def scale_free(x: np.ndarray) -> np.ndarray:
    """``x`` centred and divided by one positive number so that its overall RMS is 1 (every column keeps its
    relative scale, so PCA is unchanged); finite for any finite input, even near float64's range."""
    centred = x - x.mean(axis=0)
    peak = np.max(np.abs(centred))
    if not np.isfinite(peak):  # the mean itself overflowed: scale first, centre after
        scaled = x / np.max(np.abs(x))
        centred = scaled - scaled.mean(axis=0)
        peak = np.max(np.abs(centred))
    if peak == 0:
        return centred
    centred /= peak  # in place: at 1,000 x 4,096 every pass counts
    # numpy's pairwise sum, not BLAS's dot: its rounding must not depend on the array's memory alignment, so
    # the same data give bit-identical numbers in every process (a server's worker and the library)
    rms = float(np.sqrt(np.mean(np.square(centred))))
    centred /= rms
    return centred
