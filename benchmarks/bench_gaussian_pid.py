"""Time gaussian_pid(measure="broja") (and solve_union, which also builds the minimising
covariance) on random well-conditioned covariances, in ms per call.

    python benchmarks/bench_gaussian_pid.py [--repeats 20] [--reference /tmp/gpid]

With ``--reference`` (a checkout of github.com/praveenv253/gpid, never committed here) the ~G-PID
solver of Venkatesh et al. (``exact_gauss_tilde_pid``) runs on the same covariances and the script
prints its time and the largest absolute difference between its PID parts and ours (bits).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

from pidcore.estimators.pid import gaussian_pid, solve_union

DIMS = [(4, 4, 2), (16, 16, 8), (32, 32, 16), (64, 64, 32), (128, 128, 64)]


def random_covariance(size: int, rng: np.random.Generator) -> np.ndarray:
    """A well-conditioned random covariance: Wishart with 3x as many draws as dimensions."""
    factor = rng.standard_normal((size, 3 * size))
    return factor @ factor.T / (3 * size)


def load_reference(path: str):
    """Import ~G-PID from a gpid checkout; matplotlib (plots only) is stubbed if missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        stub = types.ModuleType("matplotlib")
        stub.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.update({"matplotlib": stub, "matplotlib.pyplot": stub.pyplot})
    sys.path.insert(0, str(Path(path) / "src"))
    from gpid.tilde_pid import exact_gauss_tilde_pid

    return exact_gauss_tilde_pid


def reference_parts(solver, cov: np.ndarray, dims) -> np.ndarray:
    """[R, U1, U2, S] from ~G-PID, which orders variables (target, source 1, source 2)."""
    d1, d2, dy = dims
    order = np.r_[d1 + d2 : d1 + d2 + dy, 0 : d1 + d2]
    out = solver(cov[np.ix_(order, order)], dy, d1, d2)
    _, _, _, _, _, unique1, unique2, redundancy, synergy = out
    return np.array([redundancy, unique1, unique2, synergy])


def time_per_call(func, repeats: int) -> float:
    """Median wall time of one call in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per covariance (median reported)")
    parser.add_argument("--covariances", type=int, default=3, help="random covariances per size")
    parser.add_argument("--reference", help="path to a praveenv253/gpid checkout to compare with")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.covariances < 1:
        parser.error("--repeats and --covariances must be >= 1")
    solver = None
    if args.reference:
        if not (Path(args.reference) / "src" / "gpid" / "tilde_pid.py").is_file():
            parser.error(f"--reference {args.reference}: no src/gpid/tilde_pid.py there (a praveenv253/gpid checkout?)")
        solver = load_reference(args.reference)
    rng = np.random.default_rng(args.seed)

    header = f"{'dims':>16} {'ours ms':>9} {'solve_union ms':>15}"
    if solver:
        header += f" {'~G-PID ms':>10} {'speed-up':>9} {'max |diff| bits':>16}"
    print(header)
    previous = None
    for dims in DIMS:
        covs = [random_covariance(sum(dims), rng) for _ in range(args.covariances)]
        ours_ms = float(np.mean([time_per_call(lambda c=c, d=dims: gaussian_pid(c, d), args.repeats) for c in covs]))
        union_ms = float(np.mean([time_per_call(lambda c=c, d=dims: solve_union(c, d), args.repeats) for c in covs]))
        line = f"{str(dims):>16} {ours_ms:9.3f} {union_ms:15.3f}"
        if solver:
            ref_ms, diff = [], 0.0
            for cov in covs:
                start = time.perf_counter()
                ref = reference_parts(solver, cov, dims)
                ref_ms.append(1e3 * (time.perf_counter() - start))
                pid = gaussian_pid(cov, dims)
                ours = np.array([pid.redundancy, pid.unique1, pid.unique2, pid.synergy])
                diff = max(diff, float(np.max(np.abs(ours - ref))))
            line += f" {np.mean(ref_ms):10.1f} {np.mean(ref_ms) / ours_ms:8.0f}x {diff:16.2e}"
        if previous:
            growth = np.log(ours_ms / previous[1]) / np.log(sum(dims) / sum(previous[0]))
            line += f"   cost ~ size^{growth:.1f} vs previous"
        previous = (dims, ours_ms)
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
