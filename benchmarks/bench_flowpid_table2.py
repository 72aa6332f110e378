"""The Flow-PID paper's Table 2 systems, rebuilt, through pidflow's default pid_flow (bits).

Usage: .venv/bin/python benchmarks/bench_flowpid_table2.py [--n 10000] [--dims 16 16 8] [--seeds 0]

The recipe of ../shared/reference/flowpid-table2.md: Y ~ N(0, I_2); X_k = H_k Y + unit white noise, H_k with
N(0, 1) entries drawn after np.random.seed(0) (H1 then H2, numpy's legacy generator); x1 -> x1^3,
x2 -> cbrt(x2), y -> cbrt(y). The analysis is pidflow's default (gaussianize="auto", bias-corrected, one
fold split per --seeds entry, which also seeds the samples) at --dims (default: pid_flow's own, (16, 16, 8)),
capped at each variable's features.

Two truths per row, both of our own draw of H (bits):
- latent: the Gaussian PID of the population covariance before the warps (the paper's Truth column);
- through the reduction: the same system seen through the population version of the reduction the analysis
  chose. The warps are monotone per feature, so the population copula scores of every feature are its
  standardised latent, and their population covariance is the latents' correlation matrix; each variable
  with more features than its dims is projected on the top-dims eigenvectors of its own block of that matrix
  (the population PCA of its copula scores), and the truth is gaussian_pid of the projected covariance. It
  equals the latent truth where the dims keep every feature. (Only defined where the plan chose the copula for
  every variable that is reduced; printed "n/a" otherwise.)
Prints per row and part: the estimate, both truths, the error against the truth through the reduction and
whether it is within 0.05 bits, with the published Tilde-PID / Flow-PID / Truth columns beside (their Truth is
of the authors' draw, truncated in print); per reduced variable, the population eigenvalues at the cut (a
small gap there makes the sample PCA's subspace unstable).
"""

import argparse
import os
import time
import warnings

import numpy as np

from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import layerwise

PUBLISHED = {  # (Tilde-PID, Flow-PID, Truth) per part R, U1, U2, S
    (2, 2, 2): [(0.18, 0.62, 0.79), (0.29, 0.91, 1.46), (0.76, 0.50, 0.58), (0.02, 0.11, 0.18)],
    (10, 5, 2): [(0.84, 2.36, 2.96), (0.0, 0.32, 0.54), (1.19, 0.19, 0.26), (0.16, 0.45, 0.58)],
    (30, 10, 2): [(1.09, 2.18, 2.92), (0.0, 1.13, 2.18), (0.88, 0.0, 0.0), (0.19, 0.17, 0.25)],
    (100, 60, 2): [(1.48, 4.34, 5.71), (0.0, 0.36, 1.01), (1.97, 0.0, 0.0), (0.13, 0.25, 0.57)],
}
PARTS = ("redundancy", "unique1", "unique2", "synergy")
BAR = 0.05


def latent_covariance(dims: tuple) -> np.ndarray:
    """The population covariance of (x1, x2, y) before the warps, H drawn as the recipe says."""
    d1, d2, dy = dims
    np.random.seed(0)
    h1, h2 = np.random.randn(d1, dy), np.random.randn(d2, dy)
    h = np.vstack([h1, h2])
    return np.block([[h @ h.T + np.eye(d1 + d2), h], [h.T, np.eye(dy)]])


def system(dims: tuple, n: int, sample_seed: int):
    """(x1, x2, y) warped samples, the latent covariance and its exact PID (bits)."""
    d1, d2, dy = dims
    cov = latent_covariance(dims)
    h1, h2 = cov[:d1, d1 + d2:], cov[d1:d1 + d2, d1 + d2:]
    rng = np.random.default_rng(sample_seed)
    y = rng.standard_normal((n, dy))
    x1 = y @ h1.T + rng.standard_normal((n, d1))
    x2 = y @ h2.T + rng.standard_normal((n, d2))
    return (x1**3, np.cbrt(x2), np.cbrt(y)), cov, gaussian_pid(cov, dims)


def reduction_truth(cov: np.ndarray, dims: tuple, kept: tuple) -> tuple:
    """(PID bits, {variable: (eigenvalue kept last, first one dropped)}) of the latent system seen through the
    population reduction: copula scores (the correlation matrix), then each variable with more features than
    its ``kept`` dims projected on the top eigenvectors of its own block."""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    edges = np.cumsum((0, *dims))
    transform = np.zeros((edges[-1], sum(kept)))
    cuts, column = {}, 0
    for k, (name, features, keep) in enumerate(zip(("x1", "x2", "y"), dims, kept, strict=True)):
        rows = slice(edges[k], edges[k + 1])
        if features <= keep:  # the pipeline only centres such a variable
            transform[rows, column:column + keep] = np.eye(features)
        else:
            values, vectors = np.linalg.eigh(corr[rows, rows])
            transform[rows, column:column + keep] = vectors[:, ::-1][:, :keep]
            cuts[name] = (values[::-1][keep - 1], values[::-1][keep])
        column += keep
    return gaussian_pid(transform.T @ corr @ transform, kept), cuts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dims", type=int, nargs=3, default=(16, 16, 8), help="pid_flow's dims (default: its own)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    worst_latent, worst_reduced, misses = 0.0, 0.0, []
    for dims, published in PUBLISHED.items():
        kept = tuple(min(a, b) for a, b in zip(args.dims, dims, strict=True))
        for seed in args.seeds:
            (x1, x2, y), cov, latent = system(dims, args.n, seed)
            start = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                analysis = layerwise([x1], [x2], y, dims=tuple(args.dims), bootstrap=0, seed=seed)
            result = analysis.layers[0]
            marginal = analysis.plan.marginal
            reduced_ok = all(marginal[name] == "copula" for name, f, k in zip(("x1", "x2", "y"), dims, kept,
                                                                               strict=True) if f > k)
            reduced, cuts = reduction_truth(cov, dims, kept)
            print(f"Dim {dims}, seed {seed}, dims used {kept}, n={args.n}: plan {analysis.plan.describe()}; "
                  f"CPU {time.process_time() - start:.1f} s")
            if cuts:
                print("  population eigenvalues of the copula scores at the cut (kept last, dropped first): " +
                      ", ".join(f"{k} {a:.4f} / {b:.4f}" for k, (a, b) in cuts.items()))
            print("  part         pidflow  latent through  error within | published Tilde   Flow  Truth")
            for part, (tilde, flow, paper) in zip(PARTS, published, strict=True):
                estimate, exact = getattr(result.pid, part), getattr(latent, part)
                through = getattr(reduced, part) if reduced_ok else np.nan
                worst_latent = max(worst_latent, abs(estimate - exact))
                error = estimate - through
                within = bool(abs(error) <= BAR)
                if reduced_ok:
                    worst_reduced = max(worst_reduced, abs(error))
                if not within:
                    misses.append(f"{dims} seed {seed} {part} {error:+.3f}")
                shown = f"{through:7.3f} {error:+7.3f} {'yes' if within else 'NO':>6s}" if reduced_ok else \
                    "    n/a     n/a    n/a"
                print(f"  {part:11s} {estimate:8.3f} {exact:7.3f} {shown} |"
                      f"           {tilde:5.2f}  {flow:5.2f}  {paper:5.2f}")
    print(f"worst |error| against the truth through the reduction: {worst_reduced:.3f} bits (bar {BAR}); "
          f"parts outside the bar: {len(misses)}" + (f" ({'; '.join(misses)})" if misses else ""))
    print(f"worst |error| against the latent truth: {worst_latent:.3f} bits; load average "
          + " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
