"""The Flow-PID paper's Table 2 systems, rebuilt, through pidflow's default pid_flow (bits).

Usage: .venv/bin/python benchmarks/bench_flowpid_table2.py [--n 10000] [--dims 16 16 8] [--seeds 0]

The recipe of ../shared/reference/flowpid-table2.md: Y ~ N(0, I_2); X_k = H_k Y + unit white noise, H_k with
N(0, 1) entries drawn after np.random.seed(0) (H1 then H2, numpy's legacy generator); x1 -> x1^3,
x2 -> cbrt(x2), y -> cbrt(y). The truth is the Gaussian PID of the population covariance before the warps
(our own draw of H). Prints per row and part: pidflow's estimate, the truth, the error, and the published
Tilde-PID / Flow-PID / Truth columns beside (their Truth is of the authors' draw, truncated in print).
"""

import argparse
import time
import warnings

import numpy as np

from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import pid_flow

PUBLISHED = {  # (Tilde-PID, Flow-PID, Truth) per part R, U1, U2, S
    (2, 2, 2): [(0.18, 0.62, 0.79), (0.29, 0.91, 1.46), (0.76, 0.50, 0.58), (0.02, 0.11, 0.18)],
    (10, 5, 2): [(0.84, 2.36, 2.96), (0.0, 0.32, 0.54), (1.19, 0.19, 0.26), (0.16, 0.45, 0.58)],
    (30, 10, 2): [(1.09, 2.18, 2.92), (0.0, 1.13, 2.18), (0.88, 0.0, 0.0), (0.19, 0.17, 0.25)],
    (100, 60, 2): [(1.48, 4.34, 5.71), (0.0, 0.36, 1.01), (1.97, 0.0, 0.0), (0.13, 0.25, 0.57)],
}
PARTS = ("redundancy", "unique1", "unique2", "synergy")


def system(dims: tuple, n: int, sample_seed: int):
    """(x1, x2, y) warped samples and the exact PID (bits) of the Gaussian before the warps."""
    d1, d2, dy = dims
    np.random.seed(0)
    h1, h2 = np.random.randn(d1, dy), np.random.randn(d2, dy)
    h = np.vstack([h1, h2])
    cov = np.block([[h @ h.T + np.eye(d1 + d2), h], [h.T, np.eye(dy)]])
    rng = np.random.default_rng(sample_seed)
    y = rng.standard_normal((n, dy))
    x1 = y @ h1.T + rng.standard_normal((n, d1))
    x2 = y @ h2.T + rng.standard_normal((n, d2))
    return (x1**3, np.cbrt(x2), np.cbrt(y)), gaussian_pid(cov, dims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dims", type=int, nargs=3, default=(16, 16, 8), help="pid_flow's dims (default: its own)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    worst = 0.0
    for dims, published in PUBLISHED.items():
        for seed in args.seeds:
            (x1, x2, y), truth = system(dims, args.n, seed)
            start = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = pid_flow(x1, x2, y, dims=tuple(args.dims), bootstrap=0, seed=seed)
            used = tuple(min(a, b) for a, b in zip(args.dims, dims, strict=True))
            print(f"Dim {dims}, seed {seed}, dims used {used}, n={args.n}: {result.gaussianization}; "
                  f"CPU {time.process_time() - start:.1f} s")
            print("  part         pidflow   truth   error | published Tilde   Flow  Truth")
            for part, (tilde, flow, paper) in zip(PARTS, published, strict=True):
                estimate, exact = getattr(result.pid, part), getattr(truth, part)
                worst = max(worst, abs(estimate - exact))
                print(f"  {part:11s} {estimate:8.3f} {exact:7.3f} {estimate - exact:+7.3f} |"
                      f"           {tilde:5.2f}  {flow:5.2f}  {paper:5.2f}")
    print(f"worst |error| over rows and parts: {worst:.3f} bits (bar: 0.05)")


if __name__ == "__main__":
    main()
