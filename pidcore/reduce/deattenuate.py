"""Undo the sample PCA's attenuation at real width (spiked-covariance theory).

With many more features than questions, a sample principal component's scores are its population
component's scores plus independent noise: standardised, z = sqrt(o) u + sqrt(1 - o) e, with o the squared
correlation of the two (``pidcore.reduce.pca.spiked_overlap``). So between variables every correlation is
shrunk by sqrt(o_i o_j), and the PID of the sample components is low. ``deattenuate`` inverts that on a
covariance of standardised latents: C_u = D (C - diag(1 - o)) D with D = diag(1 / sqrt(o)); within one
source this leaves the PCA scores' identity as it is, across sources and to the target it divides by
sqrt(o_i o_j). Components with o = 1 (the target, centred or well-estimated variables, components at or
below the noise edge whose direction cannot be told from noise) are left alone, and overlaps below
OVERLAP_FLOOR are tapered: just above the edge a sample eigenvalue is as likely a fluctuation of the noise as
a spike, and dividing its noise correlations by sqrt(o) claimed up to 1.2 bits that were not there
(benchmarks/bench_real_width.py), while leaving such components alone made the correction jump when a
component crossed the edge. So an overlap o < OVERLAP_FLOOR is used as 1 - (1 - OVERLAP_FLOOR) o /
OVERLAP_FLOOR: 1 at the edge, OVERLAP_FLOOR at o = OVERLAP_FLOOR (``used_overlaps``).

When sampling noise makes the inverted covariance (nearly) singular, the correction is applied partly: the
overlaps are moved towards 1 (o_t = o + t (1 - o)) by the least t that keeps its least eigenvalue above
MIN_EIGENVALUE.
"""

from __future__ import annotations

import numpy as np

#: Overlaps estimated below this (spike l < 1.2 sqrt(gamma)) are tapered towards 1 at the noise edge: chosen on the
#: known systems of benchmarks/bench_width_grid.py and bench_real_width.py over no bound, a bound at 0.2-0.5,
#: leaving such components uncorrected and a taper from 0.5 (docs/pipeline.md).
OVERLAP_FLOOR = 0.3
#: The least eigenvalue the corrected covariance of standardised latents may have (a correction that would go
#: lower is applied partly): near-singular corrections come from sampling noise and would claim up to
#: 0.5 log2(1 / eigenvalue) bits per direction; 0.02 caps that near 2.8 bits.
MIN_EIGENVALUE = 0.02


def _inverted(cov: np.ndarray, overlaps: np.ndarray) -> np.ndarray:
    scale = 1.0 / np.sqrt(overlaps)
    return (cov - np.diag(1.0 - overlaps)) * np.outer(scale, scale)


def _definite(matrix: np.ndarray) -> bool:
    return bool(np.linalg.eigvalsh(matrix)[0] > MIN_EIGENVALUE)


def used_overlaps(overlaps, share: float = 0.0) -> np.ndarray:
    """(d,) the overlaps a correction with ``share`` t left out divides by: o itself from OVERLAP_FLOOR up;
    below it tapered linearly from OVERLAP_FLOOR (at o = OVERLAP_FLOOR) to 1 (at the noise edge, o = 0, and for
    NaN: at or below it), so the correction is continuous in the sample eigenvalues; moved towards 1 by t."""
    full = np.asarray(overlaps, dtype=float)
    full = np.where(np.isnan(full), 0.0, np.clip(full, 0.0, 1.0))  # at or below the edge: as at the edge
    full = np.where(full >= OVERLAP_FLOOR, full, 1.0 - (1.0 - OVERLAP_FLOOR) * full / OVERLAP_FLOOR)
    return full + share * (1.0 - full)


def deattenuate(cov, overlaps) -> tuple[np.ndarray, float]:
    """(corrected covariance, t): ``cov`` of standardised latents with its sample components' attenuation
    undone (module docstring), and the share t in [0, 1] of the correction left out to keep it positive
    definite (0: corrected in full; 1: not corrected). ``overlaps``: (d,) per coordinate, 1 where nothing
    is to be undone (NaN: a component at or below the noise edge, left alone too)."""
    matrix = np.asarray(cov, dtype=float)
    full = used_overlaps(overlaps)
    if np.all(full >= 1.0):
        return matrix, 0.0
    corrected = _inverted(matrix, full)
    if _definite(corrected):
        return corrected, 0.0
    if not _definite(matrix):  # the input itself is (nearly) singular: leave it alone
        return matrix, 1.0
    lo, hi = 0.0, 1.0  # bisect for the least t that stays definite
    for _ in range(20):
        mid = (lo + hi) / 2
        if _definite(_inverted(matrix, full + mid * (1.0 - full))):
            hi = mid
        else:
            lo = mid
    return _inverted(matrix, full + hi * (1.0 - full)), hi
