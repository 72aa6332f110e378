"""Bias and interval coverage of pidflow's PID estimates on Gaussian systems with known answers.

For each configuration (dims, n) and Gaussianization mode, ``--seeds`` samples of a known system go through
``pidcore.pid_flow``; the table gives, per part, the mean error (bits) of the plug-in and of the corrected
estimate, and how often the 95% interval contains the truth (plug-in: percentile intervals, as before this
change; corrected: basic intervals about the corrected estimate, the default). With Gaussianization on the
system is first pushed through element-wise warps (x1**3, cbrt(x2), sinh(y)), so the truth is unchanged.

    python benchmarks/bench_estimates.py                       # the three configurations, none and auto
    python benchmarks/bench_estimates.py --seeds 100 --modes none copula auto --boundary
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from pidcore.estimators.estimate import FIELDS
from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import pid_flow

CONFIGS = (((8, 8, 4), 400), ((16, 16, 8), 900), ((4, 4, 2), 2000))


def generic_system(dims, seed: int = 1, strength: float = 2.0) -> np.ndarray:
    """A random covariance of (X1, X2, Y) with all four parts well above 0."""
    rng = np.random.default_rng(seed)
    d = sum(dims)
    a = rng.normal(size=(d, d)) * strength / np.sqrt(d)
    return a @ a.T + 0.3 * np.eye(d)


def boundary_system(dims) -> np.ndarray:
    """X1 sees half of Y, X2 the other half: redundancy and synergy exactly 0 (the README's example)."""
    d1, d2, dy = dims
    rng = np.random.default_rng(3)
    half = dy // 2
    a1 = np.zeros((dy, d1))
    a1[:half] = rng.normal(size=(half, d1))
    a2 = np.zeros((dy, d2))
    a2[half:] = rng.normal(size=(dy - half, d2))
    mix = np.hstack([a1, a2])
    d12 = d1 + d2
    cov = np.zeros((d12 + dy, d12 + dy))
    cov[:d12, :d12] = mix.T @ mix + np.eye(d12)
    cov[:d12, d12:] = mix.T
    cov[d12:, :d12] = mix
    cov[d12:, d12:] = np.eye(dy)
    return cov


def warp(x1, x2, y):
    return x1 ** 3, np.cbrt(x2), np.sinh(y)


def run(cov, dims, n, mode: str, seeds: int, bootstrap: int) -> dict:
    truth = gaussian_pid(cov, dims).as_dict()
    chol = np.linalg.cholesky(cov)
    d1, d2, _ = dims
    errors = {"plugin": [], "corrected": []}
    covered = {"plugin": [], "corrected": []}
    start = time.perf_counter()
    for seed in range(seeds):
        z = np.random.default_rng(1000 + seed).standard_normal((n, sum(dims))) @ chol.T
        x1, x2, y = z[:, :d1], z[:, d1:d1 + d2], z[:, d1 + d2:]
        if mode != "none":
            x1, x2, y = warp(x1, x2, y)
        for estimator in ("plugin", "corrected"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = pid_flow(x1, x2, y, dims=dims, gaussianize=mode, estimator=estimator, bootstrap=bootstrap,
                                  seed=seed)
            errors[estimator].append([result.pid.as_dict()[k] - truth[k] for k in FIELDS])
            covered[estimator].append([result.ci[k][0] <= truth[k] <= result.ci[k][1] for k in FIELDS])
    seconds = (time.perf_counter() - start) / seeds / 2
    return {"truth": truth, "seconds": seconds,
            **{f"bias_{e}": np.mean(errors[e], axis=0) for e in errors},
            **{f"se_{e}": np.std(errors[e], axis=0) / np.sqrt(seeds) for e in errors},
            **{f"coverage_{e}": np.mean(covered[e], axis=0) for e in covered}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--modes", nargs="+", default=["none", "auto"])
    parser.add_argument("--boundary", action="store_true", help="also the system with R = S = 0")
    args = parser.parse_args()
    systems = [("generic", generic_system)] + ([("boundary R=S=0", boundary_system)] if args.boundary else [])
    names = " ".join(f"{k[:5]:>7}" for k in FIELDS)
    print(f"{args.seeds} seeds, {args.bootstrap} bootstrap rounds; bias = mean error (bits); "
          f"coverage of the 95% intervals")
    for label, make in systems:
        for dims, n in CONFIGS:
            cov = make(dims)
            for mode in args.modes:
                row = run(cov, dims, n, mode, args.seeds, args.bootstrap)
                truth = " ".join(f"{row['truth'][k]:7.3f}" for k in FIELDS)
                print(f"\n{label} dims {dims} n {n} gaussianize {mode} ({row['seconds']:.2f} s per analysis)")
                print(f"  {'':26s}{names}")
                print(f"  {'truth (bits)':26s}{truth}")
                for estimator, title in (("plugin", "plug-in (before)"), ("corrected", "corrected (now)")):
                    bias = " ".join(f"{v:+7.3f}" for v in row[f"bias_{estimator}"])
                    cover = " ".join(f"{v:7.2f}" for v in row[f"coverage_{estimator}"])
                    print(f"  {title + ' bias':26s}{bias}")
                    print(f"  {title + ' coverage':26s}{cover}")
                se = " ".join(f"{v:7.3f}" for v in row["se_corrected"])
                print(f"  {'standard error of bias':26s}{se}")


if __name__ == "__main__":
    main()
