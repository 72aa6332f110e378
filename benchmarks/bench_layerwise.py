"""Wall time of layerwise PID Flow: 33 layers x n=2,000 x dims (16, 16, 8), flows included.

Usage: .venv/bin/python benchmarks/bench_layerwise.py [--layers 33] [--n 2000] [--features 256] [--threads 1]
       [--skip-before]
Prints, for "before" (the previous default: flows trained one after another with batch 512 and
learning rate 1e-2) and "after" (the default: flows of one shape trained together in batched chunks,
batch 128, learning rate 2e-2), the total and the PCA / flows / PID breakdown in seconds; then the
accuracy check: the largest change of any PID part between the two (bits) next to the seed-to-seed
spread of the "after" estimate (seed 0 vs seed 1), which it should not exceed by much.
"""

import argparse
import time

import numpy as np

from pidcore.pipeline import layerwise


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="threads of the batched flow training")
    parser.add_argument("--skip-before", action="store_true", help="time only the batched (default) path")
    args = parser.parse_args()
    x1, x2, y = synthetic_layers(args.layers, args.n, args.features)
    print(f"layerwise: {args.layers} layers x n={args.n} x {args.features} features, dims (16, 16, 8)")
    runs = {}
    modes = [("after", {"threads": args.threads})]
    if not args.skip_before:
        modes.insert(0, ("before", {"batched": False, "batch_size": 512, "learning_rate": 1e-2}))
    for label, options in modes:
        start = time.perf_counter()
        runs[label] = layerwise(x1, x2, y, dims=(16, 16, 8), flow_options=options)
        total = time.perf_counter() - start
        print(f"{label:6s} total {total:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[label].timings.items()),
              flush=True)
    print("synergy by layer (bits):", np.round(runs["after"].synergy, 3).tolist())
    if "before" in runs:
        start = time.perf_counter()
        other_seed = layerwise(x1, x2, y, dims=(16, 16, 8), seed=1, flow_options={"threads": args.threads})
        print(f"after, seed 1: {time.perf_counter() - start:.1f} s")
        for name in ("redundancy", "unique1", "unique2", "synergy", "total"):
            change = np.abs(runs["before"].part(name) - runs["after"].part(name))
            spread = np.abs(other_seed.part(name) - runs["after"].part(name))
            print(f"{name:10s} |before - after| max {change.max():.3f} mean {change.mean():.3f} bits; "
                  f"|seed 0 - seed 1| max {spread.max():.3f} mean {spread.mean():.3f} bits")

if __name__ == "__main__":
    main()
