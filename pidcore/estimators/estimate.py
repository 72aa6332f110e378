"""From a sample covariance to PID estimates a researcher can publish: bias correction and intervals (bits).

A plug-in Gaussian PID of a sample covariance is biased upward. Every part is a combination of four
quantities: I1 = I(X1;Y), I2 = I(X2;Y), I12 = I(X1,X2;Y) and the union information UI, with
R = I1 + I2 - UI, U1 = UI - I2, U2 = UI - I1, S = I12 - UI. ``corrected_pid`` removes

- from I1, I2 and I12 their exact expected plug-in bias (the Wishart/digamma expectation of each
  log-determinant, ``pidcore.estimators.info.logdet_bias``; exact for Gaussian latents, whatever the covariance);
- from UI its bias estimated by a parametric bootstrap at the estimated covariance: ``bias_draws``
  sample covariances drawn from the Wishart law of n Gaussian samples with that covariance (Bartlett
  decomposition, no rows generated), bias = mean UI(draws) - UI(estimate). This follows the approach
  of Venkatesh et al. (NeurIPS 2023) — correct the MI terms analytically, estimate the union term's
  bias by simulation — with the simulation done at the estimate.

The corrected values are estimates of the true parts, not clipped at 0: a part whose truth is 0 gets
small negative values about half of the time.

Intervals (``basic_interval``): rows are resampled with replacement (``bootstrap_rows``; the same rows
for every layer and every run, so differences between runs are paired), the plug-in PID of each draw is
taken, and the interval is the corrected estimate minus the draws' deviations from their own mean
(the "basic" bootstrap interval reflected about the corrected estimate). Percentiles of plug-in draws
would sit about one bias above the truth (repeated rows add a second bias); the deviations do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pidcore.estimators.info import logdet_bias
from pidcore.estimators.pid import PID, gaussian_pid

__all__ = ["corrected_pid", "plugin_bias", "mi_bias", "bootstrap_rows", "basic_interval", "percentile_interval", "interval",
           "CorrectedPID", "FIELDS", "ESTIMATORS", "resample_pid"]

_LN2 = math.log(2.0)
FIELDS = ("redundancy", "unique1", "unique2", "synergy", "total")
ESTIMATORS = ("corrected", "plugin")
#: Wishart draws used to estimate the union information's bias (its Monte Carlo error is ~1/10 of the
#: draws' spread, far below the sampling error of the estimate itself).
BIAS_DRAWS = 100


def mi_bias(da: int, db: int, n: int) -> float:
    """Exact expected upward bias (bits) of the plug-in Gaussian MI between a ``da``- and a ``db``-dim
    variable from ``n`` samples (mean estimated); it does not depend on the true covariance."""
    nats = 0.5 * (logdet_bias(da, n) + logdet_bias(db, n) - logdet_bias(da + db, n))
    return nats / _LN2


def plugin_bias(dims, n: int) -> float:
    """Exact expected upward bias (bits) of the plug-in total I(X1, X2; Y) from ``n`` Gaussian samples."""
    d1, d2, dy = dims
    return mi_bias(d1 + d2, dy, n)


#: Relative ridge for a resampled covariance that is (almost) singular (a resample of few distinct rows of
#: low-rank latents): the same 1e-6 relative variance that the pipeline adds to degenerate latents.
RESAMPLE_RIDGE = 1e-6


def resample_pid(cov: np.ndarray, dims, measure: str) -> tuple[PID, bool]:
    """Plug-in PID (bits) of a resampled covariance and whether it had to be regularised: a singular resample
    gets ``RESAMPLE_RIDGE`` times its variances added to the diagonal instead of failing."""
    try:
        return gaussian_pid(cov, dims, measure), False
    except ValueError:
        ridge = np.diag(np.diag(cov)) * RESAMPLE_RIDGE
        return gaussian_pid(cov + ridge, dims, measure), True


def _terms(pid: PID) -> np.ndarray:
    """[I1, I2, I12, UI] bits of a PID."""
    return np.array([pid.redundancy + pid.unique1, pid.redundancy + pid.unique2, pid.total,
                     pid.redundancy + pid.unique1 + pid.unique2])


def _from_terms(i1: float, i2: float, i12: float, union: float) -> PID:
    return PID(redundancy=i1 + i2 - union, unique1=union - i2, unique2=union - i1, synergy=i12 - union,
               total=i12)


def wishart_covariances(cov: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, d, d) sample covariances (1/(n-1) normalised) of ``n`` Gaussian samples with covariance
    ``cov``, mean estimated: (n - 1) S ~ Wishart(cov, n - 1), by the Bartlett decomposition."""
    d = cov.shape[0]
    nu = n - 1
    if nu < d:
        raise ValueError(f"need n > d + 1 samples for a {d}-dim covariance (n={n})")
    chol = np.linalg.cholesky(cov)
    lower = np.tril(rng.standard_normal((draws, d, d)), k=-1)
    diag = np.sqrt(rng.chisquare(nu - np.arange(d), size=(draws, d)))
    lower[:, np.arange(d), np.arange(d)] = diag
    factor = chol @ lower
    return factor @ np.swapaxes(factor, 1, 2) / nu


def _union_bias(draws: np.ndarray, estimate: np.ndarray, mi_biases: np.ndarray) -> float:
    """Monte Carlo bias of the union information (bits) from (draws, 4) [I1, I2, I12, UI] of Wishart draws,
    with the three MIs as control variates: their draws' mean excess is known exactly (``mi_biases``), so
    the part of UI's Monte Carlo error they explain (most of it: UI moves with I1, I2, I12) is removed."""
    excess = draws - estimate
    controls = excess[:, :3] - mi_biases
    centred = controls - controls.mean(axis=0)
    target = excess[:, 3] - excess[:, 3].mean()
    beta = np.linalg.lstsq(centred, target, rcond=None)[0] if len(draws) > 4 else np.zeros(3)
    return float(excess[:, 3].mean() - controls.mean(axis=0) @ beta)


@dataclass(frozen=True)
class CorrectedPID:
    """``corrected`` and ``plugin`` PIDs (bits) of one sample covariance and ``bias`` = plugin - corrected
    per field (bits); ``n`` samples behind it."""

    corrected: PID
    plugin: PID
    bias: dict
    n: int


def corrected_pid(cov, dims, n: int, measure: str = "broja", *, bias_draws: int = BIAS_DRAWS,
                  seed: int = 0) -> CorrectedPID:
    """Bias-corrected Gaussian PID (bits) of a sample covariance of ``n`` rows (see the module docstring).

    ``bias_draws`` Wishart draws (seeded by ``seed``) estimate the union information's bias; 0 corrects
    only the three mutual informations."""
    d1, d2, dy = (int(d) for d in dims)
    matrix = np.asarray(cov, dtype=float)
    if n < d1 + d2 + dy + 1:
        raise ValueError(f"bias correction needs more samples than dimensions: n={n} for {d1}+{d2}+{dy} dims "
                         f"(use at least {d1 + d2 + dy + 1} samples or smaller dims)")
    plugin = gaussian_pid(matrix, (d1, d2, dy), measure)
    i1, i2, i12, union = _terms(plugin)
    b1, b2, b12 = mi_bias(d1, dy, n), mi_bias(d2, dy, n), mi_bias(d1 + d2, dy, n)
    union_bias = 0.0
    if bias_draws > 0:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 5381])
        samples = wishart_covariances(matrix, n, int(bias_draws), rng)
        union_bias = _union_bias(np.array([_terms(resample_pid(s, (d1, d2, dy), measure)[0]) for s in samples]),
                                 np.array([i1, i2, i12, union]), np.array([b1, b2, b12]))
    corrected = _from_terms(i1 - b1, i2 - b2, i12 - b12, union - union_bias)
    bias = {k: plugin.as_dict()[k] - corrected.as_dict()[k] for k in FIELDS}
    return CorrectedPID(corrected=corrected, plugin=plugin, bias=bias, n=int(n))


def bootstrap_rows(fold_ids: np.ndarray, rounds: int, seed: int):
    """Yield ``rounds`` arrays of row indices drawn with replacement within each fold (fold sizes kept).

    Deterministic for (fold_ids, rounds, seed): every layer and every run of an analysis with the same
    questions gets the same rows, so bootstrap draws of two runs are paired."""
    rng = np.random.default_rng(seed + 7919)
    members = [np.flatnonzero(fold_ids == f) for f in np.unique(fold_ids)]
    for _ in range(int(rounds)):
        yield np.concatenate([rng.choice(m, len(m)) for m in members])


def basic_interval(estimate: float, draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """[estimate - q_hi(D), estimate - q_lo(D)] with D = draws - mean(draws): the bootstrap "basic"
    interval reflected about ``estimate`` (bits). Right for a bias-corrected estimate, because the
    draws' own bias cancels in D."""
    values = np.asarray(draws, dtype=float)
    deviations = values - values.mean()
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(deviations, [tail, 100 - tail])
    return float(estimate - hi), float(estimate - lo)


def interval(estimate: float, draws: np.ndarray, estimator: str, level: float = 0.95) -> tuple[float, float]:
    """The interval (bits) that goes with an ``estimator``'s value: basic about a corrected estimate,
    plain percentiles of the draws for the plug-in."""
    if estimator == "corrected":
        return basic_interval(estimate, draws, level)
    return percentile_interval(draws, level)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Plain percentile interval of bootstrap draws (bits): what the uncorrected plug-in reports; it does
    not account for the estimator's bias."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(np.asarray(draws, dtype=float), [tail, 100 - tail])
    return float(lo), float(hi)
