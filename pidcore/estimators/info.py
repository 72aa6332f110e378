"""Mutual information of jointly Gaussian variables, in bits, from a covariance matrix.

For index sets ``a`` and ``b`` of a covariance ``S``::

    I(A; B) = 1/2 * log2( det S_aa * det S_bb / det S_(a+b)(a+b) )

Optional finite-sample bias correction (``bias_correct=True`` with sample size ``n``): if ``S``
is a sample covariance of ``n`` draws with the mean estimated, ``(n - 1) S`` is Wishart with
``nu = n - 1`` degrees of freedom and, for a d-dimensional block,

    E[ln det S_hat] = ln det S + sum_{i=1..d} digamma((nu - i + 1) / 2) + d * ln(2 / nu).

Subtracting that bias from each of the three log-determinants gives an unbiased estimate of each
Gaussian entropy and so of the MI (Cai, Liang & Zhou 2015; used for Gaussian PID by Venkatesh et al.
2023). The ``d * ln(2 / nu)`` terms cancel in the MI, so the result does not depend on whether
the covariance was normalised by ``n`` or ``n - 1``. The corrected value is an unbiased estimate,
so it is not clipped and can be slightly negative when the true MI is near zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import digamma

from pidcore.estimators._covariance import as_covariance, check_positive_definite

__all__ = ["gaussian_mi", "logdet_bias"]

_LN2 = math.log(2.0)


def _index_set(indices, size: int, name: str) -> np.ndarray:
    if isinstance(indices, slice):
        out = np.arange(size)[indices]
    else:
        out = np.atleast_1d(np.asarray(indices))
        if out.dtype == bool:
            raise ValueError(f"index set {name} must hold integer indices, not booleans")
        if out.ndim != 1 or (out.size and not np.issubdtype(out.dtype, np.integer)):
            raise ValueError(f"index set {name} must be a 1-D sequence of integers")
    if out.size == 0:
        raise ValueError(f"index set {name} is empty")
    if np.any(out < 0) or np.any(out >= size):
        raise ValueError(f"index set {name} has indices outside 0..{size - 1}")
    if np.unique(out).size != out.size:
        raise ValueError(f"index set {name} has repeated indices")
    return out.astype(np.intp)


def logdet_bias(dim: int, n: int) -> float:
    """Expected excess E[ln det S_hat] - ln det S (nats) of a ``dim``-D sample covariance of ``n`` draws."""
    nu = n - 1
    if nu < dim:
        raise ValueError(f"bias correction needs n > dim + 1 samples (n={n}, dim={dim})")
    i = np.arange(1, dim + 1)
    return float(np.sum(digamma((nu - i + 1) / 2.0)) + dim * math.log(2.0 / nu))


def _logdet(matrix: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(np.linalg.cholesky(matrix)))))


def gaussian_mi(
    cov,
    a: Sequence[int] | slice,
    b: Sequence[int] | slice,
    *,
    n: int | None = None,
    bias_correct: bool = False,
) -> float:
    """Mutual information I(A; B) in bits between index sets ``a`` and ``b`` of a Gaussian covariance.

    ``a`` and ``b`` are disjoint, non-empty integer sequences (or slices). With ``bias_correct=True``
    the sample size ``n`` is required and the Wishart bias of each log-determinant is removed (see
    the module docstring); the result is then an unbiased estimate that may be slightly negative.
    Raises ValueError for NaN/inf, non-symmetric or non-positive-definite (sub)covariances.
    """
    matrix = as_covariance(cov)
    size = matrix.shape[0]
    ia = _index_set(a, size, "a")
    ib = _index_set(b, size, "b")
    if np.intersect1d(ia, ib).size:
        raise ValueError("index sets a and b overlap")
    joint = np.concatenate([ia, ib])
    block = matrix[np.ix_(joint, joint)]
    check_positive_definite(block, name="covariance of a and b")
    if bias_correct:
        if n is None:
            raise ValueError("bias_correct=True needs the sample size n")
        if int(n) != n or n < 2:
            raise ValueError(f"sample size n must be an integer >= 2, got {n!r}")
        n = int(n)
    elif n is not None and (int(n) != n or n < 2):
        raise ValueError(f"sample size n must be an integer >= 2, got {n!r}")

    da, db = ia.size, ib.size
    inv_std = 1.0 / np.sqrt(np.diag(block))
    corr = block * inv_std[:, None] * inv_std[None, :]  # MI is scale-invariant; better conditioned
    nats = 0.5 * (_logdet(corr[:da, :da]) + _logdet(corr[da:, da:]) - _logdet(corr))
    if bias_correct:
        nats -= 0.5 * (logdet_bias(da, n) + logdet_bias(db, n) - logdet_bias(da + db, n))
    else:
        nats = max(nats, 0.0)  # the exact MI is >= 0; only round-off can make it negative
    return nats / _LN2
