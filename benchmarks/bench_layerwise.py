"""Wall time of layerwise PID Flow: 33 layers x n=2,000 x dims (16, 16, 8), flows included.

Usage: .venv/bin/python benchmarks/bench_layerwise.py [--layers 33] [--n 2000] [--features 256]
Prints the total and the PCA / flows / PID breakdown in seconds.
"""

import argparse
import time

import numpy as np
import torch

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
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x1, x2, y = synthetic_layers(args.layers, args.n, args.features)
    start = time.perf_counter()
    result = layerwise(x1, x2, y, dims=(16, 16, 8))
    total = time.perf_counter() - start
    print(f"layerwise: {args.layers} layers x n={args.n} x {args.features} features, dims (16, 16, 8)")
    print(f"total {total:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    print("synergy by layer (bits):", np.round(result.synergy, 3).tolist())


if __name__ == "__main__":
    main()
