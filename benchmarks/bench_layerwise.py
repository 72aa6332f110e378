"""Wall time of layerwise PID Flow: 33 layers x n=2,000 x dims (16, 16, 8), flows included (goal <= 30 s).

Usage: .venv/bin/python benchmarks/bench_layerwise.py [--layers 33] [--n 2000] [--features 256]
       [--threads N] [--skip-before]
Prints, for "after" (the default gaussianize="auto") and, without --skip-before, "flows forced"
(gaussianize="flow": the joint flows on every layer), the total and the PCA (copula + PCA) / flows / PID
breakdown in seconds and the Gaussianization chosen. Then two accuracy checks (bits): the change of each PID
part between the two next to the seed-to-seed spread of "after"; and the mean error against the exact PID
of a known system (a Gaussian seen through rotated sinh warps, 6 layers, n=2,000, dims (4, 4, 2)) with
gaussianize="copula" and "auto".
"""

import argparse
import time

import numpy as np
from scipy.stats import ortho_group

from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import layerwise

FIELDS = ("redundancy", "unique1", "unique2", "synergy", "total")


def synthetic_layers(layers: int, n: int, features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 8)) @ rng.normal(size=(8, 32))
    x1, x2 = [], []
    for layer in range(layers):
        mix = layer / max(layers - 1, 1)
        for store in (x1, x2):
            signal = np.hstack([y[:, :16] * mix, rng.normal(size=(n, 16))])
            store.append(np.tanh(signal @ rng.normal(size=(32, features)) / 4 + 0.5 * rng.normal(size=(n, features))))
    return x1, x2, y


def warped_gaussian(layers: int = 6, n: int = 2000, seed: int = 0):
    """Sources and target that are invertible non-element-wise warps of a known Gaussian: (x1, x2, y, PID)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(10, 10)) * 0.5 + np.eye(10)
    cov = mix @ mix.T
    g = rng.multivariate_normal(np.zeros(10), cov, size=n)

    def warp(v):
        a, b = ortho_group.rvs(v.shape[1], random_state=rng), ortho_group.rvs(v.shape[1], random_state=rng)
        return np.sinh(1.2 * (v / v.std(axis=0)) @ a) @ b

    x1 = [warp(g[:, :4]) for _ in range(layers)]
    x2 = [warp(g[:, 4:8]) for _ in range(layers)]
    return x1, x2, warp(g[:, 8:]), gaussian_pid(cov, (4, 4, 2))


def timed(x1, x2, y, label, **options):
    start = time.perf_counter()
    result = layerwise(x1, x2, y, **options)
    total = time.perf_counter() - start
    print(f"{label:14s} total {total:5.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
          + f"; gaussianization {result.layers[0].gaussianization}", flush=True)
    return result


def accuracy(threads):
    x1, x2, y, truth = warped_gaussian()
    print("known system: exact PID (bits) " + ", ".join(f"{k} {getattr(truth, k):.3f}" for k in FIELDS))
    for mode in ("copula", "auto"):
        result = layerwise(x1, x2, y, dims=(4, 4, 2), gaussianize=mode, flow_options={"threads": threads})
        errors = {k: np.abs(result.part(k) - getattr(truth, k)).mean() for k in FIELDS}
        print(f"  {mode:6s} ({result.layers[0].gaussianization}): mean |error| "
              + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="threads of the batched flow training")
    parser.add_argument("--skip-before", action="store_true", help="time only the default path, no checks")
    args = parser.parse_args()
    x1, x2, y = synthetic_layers(args.layers, args.n, args.features)
    print(f"layerwise: {args.layers} layers x n={args.n} x {args.features} features, dims (16, 16, 8)")
    after_options = {"threads": args.threads}
    before = None if args.skip_before else timed(x1, x2, y, "flows forced", dims=(16, 16, 8), gaussianize="flow",
                                                 flow_options=after_options)
    after = timed(x1, x2, y, "after", dims=(16, 16, 8), flow_options=after_options)
    print("synergy by layer (bits):", np.round(after.synergy, 3).tolist())
    if before is None:
        return
    other_seed = timed(x1, x2, y, "after, seed 1", dims=(16, 16, 8), seed=1, flow_options=after_options)
    for name in FIELDS:
        change = np.abs(before.part(name) - after.part(name))
        spread = np.abs(other_seed.part(name) - after.part(name))
        print(f"{name:10s} |forced - auto| max {change.max():.3f} mean {change.mean():.3f} bits; "
              f"|seed 0 - seed 1| max {spread.max():.3f} mean {spread.mean():.3f} bits")
    accuracy(args.threads)


if __name__ == "__main__":
    main()
