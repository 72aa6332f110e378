"""Partial information decomposition of jointly Gaussian (X1, X2; Y), in bits.

``measure="mmi"``: minimum mutual information, R = min(I(X1;Y), I(X2;Y)). It equals BROJA when
Y is scalar (Barrett 2015) and otherwise forces one unique part to zero.

``measure="broja"``: the Gaussian BROJA/GPID decomposition. The union information
UI = min_Q I_Q(X1, X2; Y), over joint Gaussians Q with the (X1, Y) and (X2, Y) marginals of the
input, has an exact closed form (derivation in docs/estimators.md):

    P_k = Cov(Y | X_k) = L_k L_k^T (Cholesky),  s_i = singular values of L1^{-1} L2,
    U1 = sum_i ln max(1, s_i),   U2 = sum_i ln max(1, 1 / s_i)          (nats; / ln 2 for bits)
    UI = I1 + U2 = I2 + U1,  R = I1 - U1 = I2 - U2,  S = I(X1, X2; Y) - UI.

The minimising Q has Cov_Q(Y | X1, X2) = P* (the largest-volume P with P <= P1 and P <= P2) and
Cov_Q(X1, X2) = S_1y (S_yy - P*)^+ S_y2.

Round-off: UI is clipped into [max(I1, I2), min(I12, I1 + I2)] (bounds that hold exactly), so every
part is >= 0 and the parts sum to ``total`` to float precision. A clip larger than
1e-6 * max(1, I12) bits (seen only for nearly singular inputs, e.g. Y fixed by X1 to ~20 bits) emits
a RuntimeWarning saying the covariance is too ill-conditioned for that accuracy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from pidcore.estimators._covariance import as_covariance, check_positive_definite

# Only numpy.linalg here: scipy.linalg links a second OpenBLAS whose thread pool fights numpy's for
# the same cores (measured: a 32x32 triangular solve took 2-8 ms instead of 0.02 ms after numpy calls).

__all__ = ["PID", "UnionSolution", "gaussian_pid", "solve_union", "MEASURES"]

MEASURES = ("broja", "mmi")
_LN2 = math.log(2.0)
_CLIP_WARN_RTOL = 1e-6
#: Eigenvalues of the whitened Cov(E_Q[Y | X]) below this are treated as zero in its pseudo-inverse.
_PINV_TOL = 1e-12


@dataclass(frozen=True)
class PID:
    """A partial information decomposition, all fields in bits; the four parts sum to ``total``."""

    redundancy: float
    unique1: float
    unique2: float
    synergy: float
    total: float

    def as_dict(self) -> dict[str, float]:
        return {
            "redundancy": self.redundancy,
            "unique1": self.unique1,
            "unique2": self.unique2,
            "synergy": self.synergy,
            "total": self.total,
        }


@dataclass(frozen=True)
class UnionSolution:
    """The union-information minimiser.

    ``union_info``: min_Q I_Q(X1, X2; Y) in bits. ``cov_q``: a minimising joint covariance of
    (X1, X2, Y) in the input's coordinates; it equals the input except in the X1-X2 cross block.
    It is positive semi-definite and may be singular (an optimal coupling can make a combination
    of X1 equal to a combination of X2), so condition on it with pseudo-inverses.
    ``posterior_cov``: Cov_Q(Y | X1, X2) (dy x dy), with union_info = 1/2 log2 det(S_yy) / det(posterior_cov).
    """

    union_info: float
    cov_q: np.ndarray
    posterior_cov: np.ndarray


@dataclass(frozen=True)
class _Terms:
    """Mutual informations and unique informations in bits (before clipping)."""

    i1: float
    i2: float
    i12: float
    unique1: float
    unique2: float


def _validated(cov, dims) -> tuple[np.ndarray, tuple[int, int, int]]:
    try:
        values = tuple(dims)
        d1, d2, dy = (int(d) for d in values)
    except (TypeError, ValueError):
        raise ValueError(f"dims must be three integers (d1, d2, dy), got {dims!r}") from None
    if any(isinstance(d, bool) or int(d) != d for d in values):
        raise ValueError(f"dims must be three integers (d1, d2, dy), got {dims!r}")
    if min(d1, d2, dy) < 1:
        raise ValueError(f"every entry of dims must be >= 1, got {dims!r}")
    matrix = as_covariance(cov)
    if d1 + d2 + dy != matrix.shape[0]:
        raise ValueError(
            f"dims {(d1, d2, dy)} sum to {d1 + d2 + dy} but cov is {matrix.shape[0]}x{matrix.shape[0]}"
        )
    check_positive_definite(matrix)
    return matrix, (d1, d2, dy)


def _log_det_from_chol(factor: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(factor))))


def _posterior_factor(corr: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cholesky factor of Cov(Y | X_source): the trailing block of the joint (X, Y) factor."""
    joint = np.concatenate([source, target])
    factor = np.linalg.cholesky(corr[np.ix_(joint, joint)])
    return factor[source.size :, source.size :]


def _closed_form(corr: np.ndarray, d1: int, d2: int):
    """Closed form on a correlation matrix: (_Terms, L1, L_y, U, s) with L1 L1^T = Cov(Y | X1),
    L_y L_y^T = Cov(Y) and U diag(s) V^T the SVD of L1^{-1} L2."""
    size = corr.shape[0]
    x1 = np.arange(d1)
    x2 = np.arange(d1, d1 + d2)
    y = np.arange(d1 + d2, size)
    chol_y = np.linalg.cholesky(corr[np.ix_(y, y)])
    chol_1 = _posterior_factor(corr, x1, y)
    chol_2 = _posterior_factor(corr, x2, y)
    chol_12 = _posterior_factor(corr, np.arange(d1 + d2), y)
    log_det_y = _log_det_from_chol(chol_y)
    i1 = 0.5 * (log_det_y - _log_det_from_chol(chol_1)) / _LN2
    i2 = 0.5 * (log_det_y - _log_det_from_chol(chol_2)) / _LN2
    i12 = 0.5 * (log_det_y - _log_det_from_chol(chol_12)) / _LN2
    ratio = np.linalg.solve(chol_1, chol_2)
    left, singular, _ = np.linalg.svd(ratio)
    log_s = np.log(singular)
    unique1 = float(np.sum(np.maximum(log_s, 0.0))) / _LN2
    unique2 = float(np.sum(np.maximum(-log_s, 0.0))) / _LN2
    return _Terms(i1, i2, i12, unique1, unique2), chol_1, chol_y, left, singular


def _parts(terms: _Terms, union: float) -> PID:
    """Split I12 given the union information (bits), clipping round-off into the exact bounds."""
    i1, i2 = max(terms.i1, 0.0), max(terms.i2, 0.0)
    i12 = max(terms.i12, i1, i2)
    low, high = max(i1, i2), min(i12, i1 + i2)
    clipped = min(max(union, low), high)
    if abs(clipped - union) > _CLIP_WARN_RTOL * max(1.0, i12):
        warnings.warn(
            f"union information {union:.9g} bits was clipped into [{low:.9g}, {high:.9g}]: the covariance "
            "is too ill-conditioned for 1e-6 relative accuracy",
            RuntimeWarning,
            stacklevel=3,
        )
    return PID(
        redundancy=i1 + i2 - clipped,
        unique1=clipped - i2,
        unique2=clipped - i1,
        synergy=i12 - clipped,
        total=i12,
    )


def _correlation(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = np.sqrt(np.diag(matrix))
    return matrix / std[:, None] / std[None, :], std


def solve_union(cov, dims) -> UnionSolution:
    """Gaussian union information min_Q I_Q(X1, X2; Y) (bits), a minimising Q and Cov_Q(Y | X1, X2).

    ``cov`` is the covariance of (X1, X2, Y) stacked in that order with sizes ``dims = (d1, d2, dy)``.
    Exact closed form (see the module docstring). Raises ValueError on NaN/inf, asymmetry, rank
    deficiency or mismatched dims.
    """
    matrix, (d1, d2, _) = _validated(cov, dims)
    corr, std = _correlation(matrix)
    terms, chol_1, chol_y, left, singular = _closed_form(corr, d1, d2)
    # P* = L1 U min(1, s^2) U^T L1^T: the largest-volume matrix below both posteriors.
    basis = chol_1 @ left
    posterior = (basis * np.minimum(singular, 1.0) ** 2) @ basis.T
    # Cov_Q(X1, X2) = S_1y (S_yy - P*)^+ S_y2, with the pseudo-inverse taken in whitened Y units.
    d12 = d1 + d2
    whitened_posterior = np.linalg.solve(chol_y, np.linalg.solve(chol_y, posterior).T)
    learned, vectors = np.linalg.eigh(np.eye(singular.size) - whitened_posterior)
    keep = learned > _PINV_TOL
    gain1 = np.linalg.solve(chol_y, corr[d12:, :d1]).T  # Cov(X1, Y_white)
    gain2 = np.linalg.solve(chol_y, corr[d12:, d1:d12]).T
    proj1 = gain1 @ vectors[:, keep]
    proj2 = gain2 @ vectors[:, keep]
    cross = (proj1 / learned[keep]) @ proj2.T
    cov_q = matrix.copy()
    cov_q[:d1, d1:d12] = cross * std[:d1, None] * std[None, d1:d12]
    cov_q[d1:d12, :d1] = cov_q[:d1, d1:d12].T
    std_y = std[d12:]
    parts = _parts(terms, terms.i1 + terms.unique2)
    return UnionSolution(
        union_info=parts.total - parts.synergy,
        cov_q=cov_q,
        posterior_cov=posterior * std_y[:, None] * std_y[None, :],
    )


def gaussian_pid(cov, dims, measure: str = "broja") -> PID:
    """PID (bits) of I(X1, X2; Y) for a Gaussian with covariance ``cov`` of (X1, X2, Y), sizes ``dims``.

    ``measure``: ``"broja"`` (Gaussian BROJA, exact closed form) or ``"mmi"``
    (R = min(I(X1;Y), I(X2;Y))). See the module docstring and docs/estimators.md.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
    matrix, (d1, d2, _) = _validated(cov, dims)
    corr, _ = _correlation(matrix)
    terms = _closed_form(corr, d1, d2)[0]
    if measure == "mmi":
        return _parts(terms, max(terms.i1, terms.i2))
    return _parts(terms, terms.i1 + terms.unique2)
