"""Wall time of layerwise PID Flow: 33 layers x n=2,000 x dims (16, 16, 8), flows included.

Usage: .venv/bin/python benchmarks/bench_layerwise.py [--layers 33] [--n 2000] [--features 256] [--threads 1]
       [--skip-before]
Prints, for "before" (flows trained one after another, flow_options={"batched": False}) and "after"
(the default: flows of one shape trained together as one batched model), the total and the PCA / flows
/ PID breakdown in seconds, and the largest difference between the two runs' PID parts (bits).
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
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the batched flow training")
    parser.add_argument("--skip-before", action="store_true", help="time only the batched (default) path")
    args = parser.parse_args()
    x1, x2, y = synthetic_layers(args.layers, args.n, args.features)
    print(f"layerwise: {args.layers} layers x n={args.n} x {args.features} features, dims (16, 16, 8)")
    runs = {}
    modes = [("after", {"threads": args.threads})]
    if not args.skip_before:
        modes.insert(0, ("before", {"batched": False}))
    for label, options in modes:
        start = time.perf_counter()
        runs[label] = layerwise(x1, x2, y, dims=(16, 16, 8), flow_options=options)
        total = time.perf_counter() - start
        print(f"{label:6s} total {total:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[label].timings.items()),
              flush=True)
    print("synergy by layer (bits):", np.round(runs["after"].synergy, 3).tolist())
    if "before" in runs:
        diff = max(np.abs(runs["before"].part(p) - runs["after"].part(p)).max()
                   for p in ("redundancy", "unique1", "unique2", "synergy", "total"))
        print(f"largest |before - after| over layers and parts: {diff:.2e} bits")


if __name__ == "__main__":
    main()
