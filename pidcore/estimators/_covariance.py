"""Validation of covariance matrices shared by the Gaussian estimators."""

from __future__ import annotations

import numpy as np

#: Relative asymmetry |S - S^T| / max|diag S| above which a matrix is rejected as non-symmetric.
SYMMETRY_RTOL = 1e-8
#: Smallest allowed Cholesky pivot (squared) of the correlation matrix; below it the matrix is
#: treated as rank-deficient. Each squared pivot is a conditional variance in correlation units,
#: so 1e-12 means "one coordinate is a linear function of the others up to one part in 1e6".
MIN_CONDITIONAL_VARIANCE = 1e-12


def as_covariance(cov, *, name: str = "cov") -> np.ndarray:
    """Return ``cov`` as a symmetric float64 array, or raise ValueError naming the problem.

    Checks: square 2-D, finite, symmetric (relative tolerance ``SYMMETRY_RTOL``), positive
    variances. The returned matrix is exactly symmetrised. Positive definiteness is checked
    separately by :func:`check_positive_definite` on the blocks that matter.
    """
    matrix = np.asarray(cov, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} contains NaN or inf")
    variances = np.diag(matrix)
    if np.any(variances <= 0):
        bad = int(np.flatnonzero(variances <= 0)[0])
        raise ValueError(f"{name} has a non-positive variance at index {bad} (constant coordinate?)")
    scale = float(np.max(variances))
    asymmetry = float(np.max(np.abs(matrix - matrix.T)))
    if asymmetry > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} is not symmetric (max |cov - cov.T| = {asymmetry:.3g})")
    return 0.5 * (matrix + matrix.T)


def check_positive_definite(matrix: np.ndarray, *, name: str = "cov") -> None:
    """Raise ValueError unless ``matrix`` (symmetric, positive diagonal) is safely positive definite.

    The test runs a Cholesky factorisation of the correlation matrix and requires every squared
    pivot (a conditional variance in correlation units) to exceed ``MIN_CONDITIONAL_VARIANCE``.
    """
    inv_std = 1.0 / np.sqrt(np.diag(matrix))
    correlation = matrix * inv_std[:, None] * inv_std[None, :]
    try:
        factor = np.linalg.cholesky(correlation)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite (rank-deficient or indefinite)") from None
    pivots = np.diag(factor) ** 2
    if np.min(pivots) < MIN_CONDITIONAL_VARIANCE:
        worst = int(np.argmin(pivots))
        raise ValueError(
            f"{name} is rank-deficient: coordinate {worst} is (almost) a linear function of the others "
            f"(conditional variance {pivots[worst]:.3g} in correlation units)"
        )
