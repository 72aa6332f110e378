"""Known-answer systems at the width of real models: pooled-state-like features whose PID is known (bits).

A Gaussian latent system (Z1, Z2, Y) with all four PID parts non-zero is embedded, per layer, into ``width``
features per source: the latents along random orthonormal directions with a per-direction variance of
``signal`` times a feature's noise variance (varying with depth), a few high-variance nuisance directions
independent of everything, a power-law background of weaker directions, unit-variance noise per feature,
then an element-wise heavy-tailed warp of a few "massive" features (large scale, sinh tails), as LLM
activations have. Every warp is monotone per feature and every added direction is independent of the
latents, so the PID of (X1, X2; Y) is that of the latents seen through the unit noise along the signal
directions (``truth``, per layer); a reduction that keeps every signal direction keeps all of it (see
docs/pipeline.md, "What the numbers estimate").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pidcore.estimators.pid import PID, gaussian_pid


def latent_covariance(dims: tuple[int, int, int] = (4, 4, 4), seed: int = 0, coupling: float = 0.3) -> np.ndarray:
    """A random correlation matrix of (Z1, Z2, Y) with ``dims`` coordinates each; every PID part of a draw
    with the default coupling is non-zero (use ``gaussian_pid(cov, dims)`` for the exact values, bits)."""
    rng = np.random.default_rng(seed)
    size = sum(dims)
    mix = np.eye(size) + coupling * rng.normal(size=(size, size))
    cov = mix @ mix.T
    scale = np.sqrt(np.diag(cov))
    return cov / np.outer(scale, scale)


@dataclass(frozen=True)
class RealWidthSystem:
    """``x1``/``x2``: one (n, width) array per layer; ``y``: (n, dy); ``truth``: per layer, the PID of the
    features (bits): that of (sqrt(signal) Z1 + e1, sqrt(signal) Z2 + e2; Y) with unit noise e along the signal
    directions (the projection on them is sufficient: everything else is independent of the latents, and the
    warps are monotone per feature); ``latent``: the latents' own PID (the limit of a strong signal);
    ``signal``: per layer, the signal directions' variance in units of a feature's noise."""

    x1: list
    x2: list
    y: np.ndarray
    truth: list
    latent: PID
    signal: np.ndarray
    latent_dims: tuple = field(default=(4, 4, 4))


def feature_pid(cov: np.ndarray, dims: tuple[int, int, int], signal: float) -> PID:
    """PID (bits) of (sqrt(signal) Z1 + e1, sqrt(signal) Z2 + e2; Y) for latents (Z1, Z2, Y) ~ N(0, cov) and
    independent unit noise e on the sources' coordinates."""
    d1, d2, _ = dims
    noisy = signal * cov
    noisy[:d1 + d2, d1 + d2:] /= np.sqrt(signal)
    noisy[d1 + d2:, :d1 + d2] /= np.sqrt(signal)
    noisy[d1 + d2:, d1 + d2:] = cov[d1 + d2:, d1 + d2:]
    noisy[np.arange(d1 + d2), np.arange(d1 + d2)] += 1.0
    return gaussian_pid(noisy, dims)


def _directions(rng, width: int, count: int) -> np.ndarray:
    """(count, width) orthonormal rows."""
    q, _ = np.linalg.qr(rng.normal(size=(width, count)))
    return q.T


def embed(latents: np.ndarray, rng, *, width: int, signal: float, nuisance: int = 3,
          nuisance_variance: tuple[float, float] = (20.0, 50.0), background: int = 32,
          background_top: float = 2.0, massive: float = 0.02, massive_scale: float = 10.0,
          massive_warp: float = 1.5, dtype=np.float32) -> np.ndarray:
    """(n, width) features holding ``latents`` (n, k; unit variance) along random directions of variance
    ``signal`` (a feature's noise variance is 1), plus nuisance, power-law background, noise and the warp of
    a ``massive`` fraction of features: x -> sinh(massive_warp * x / sd) * sd * massive_scale."""
    n, k = latents.shape
    directions = _directions(rng, width, k + nuisance + background)
    scales = np.concatenate([
        np.full(k, np.sqrt(signal)),
        np.sqrt(np.linspace(*nuisance_variance, nuisance)) if nuisance else np.zeros(0),
        np.sqrt(background_top / np.arange(1, background + 1)),
    ])
    sources = np.hstack([latents, rng.standard_normal((n, nuisance + background))])
    x = (sources * scales) @ directions
    x += rng.standard_normal((n, width))
    heavy = rng.choice(width, size=max(1, int(round(massive * width))), replace=False) if massive > 0 else []
    for j in heavy:
        sd = x[:, j].std()
        x[:, j] = np.sinh(massive_warp * x[:, j] / sd) * sd * massive_scale
    return x.astype(dtype)


def real_width_system(*, n: int = 1000, width: int = 4096, layers: int = 33, latent_dims=(4, 4, 4),
                      signal: tuple[float, float] = (4.0, 8.0), seed: int = 0, system_seed: int = 0,
                      dtype=np.float32, **embed_options) -> RealWidthSystem:
    """A LLaVA-7B-shaped known system: ``layers`` x (n, width) per source, y (n, dy). The signal strength per
    direction rises from signal[0] to signal[1] and back over depth (strongest mid-depth)."""
    cov = latent_covariance(tuple(latent_dims), system_seed)
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)
    d1, d2, _ = latent_dims
    z1, z2, zy = z[:, :d1], z[:, d1:d1 + d2], z[:, d1 + d2:]
    depth = np.linspace(0.0, 1.0, layers)
    strength = signal[0] + (signal[1] - signal[0]) * np.sin(np.pi * depth)
    x1 = [embed(z1, rng, width=width, signal=float(s), dtype=dtype, **embed_options) for s in strength]
    x2 = [embed(z2, rng, width=width, signal=float(s), dtype=dtype, **embed_options) for s in strength]
    rotation = _directions(rng, zy.shape[1], zy.shape[1])
    dims = tuple(latent_dims)
    return RealWidthSystem(x1=x1, x2=x2, y=zy @ rotation, truth=[feature_pid(cov, dims, float(s)) for s in strength],
                           latent=gaussian_pid(cov, dims), signal=strength, latent_dims=dims)
