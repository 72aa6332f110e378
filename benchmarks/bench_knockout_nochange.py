"""Knockout deltas where nothing changed: how often a paired interval misses the true delta of 0 (bits).

Usage: .venv/bin/python benchmarks/bench_knockout_nochange.py [--pairs 100] [--n 400] [--features 12]
       [--layers 4] [--window 2] [--bootstrap 200]

Each pair is a features file (the user's path: pidcore.write_features, pidcore.analyze_features) whose
knockout run equals the baseline up to layer --window - 1 and, from --window on, holds the same latents
(a Gaussian system with all four PID parts non-zero, 2-d target, embedded in --features features per source) with
fresh feature noise: the population PID is the same in both runs, so every true delta is 0. Prints, over
all (layer >= window, term) cells of all pairs, the share flagged "changed" (the paired interval excludes 0;
bar: <= 0.06 at a nominal 0.05) and the coverage of 0 (bar: >= 0.92), per term and pooled, and the ratio of
the deltas' spread across pairs to the mean interval's implied sd.
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

import pidcore
from pidcore.features.files import read_features
from pidcore.features.uploaded import features_request
from pidcore.synthetic import latent_covariance

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy", "total")


def pair(seed: int, n: int, features: int, layers: int, window: int, folder: Path) -> Path:
    rng = np.random.default_rng(seed)
    cov = latent_covariance((2, 2, 2), seed=4)  # R 0.23, U1 0.19, U2 0.34, S 0.39 bits: every part non-zero
    z = rng.multivariate_normal(np.zeros(6), cov, size=n)
    a1, a2 = rng.normal(size=(2, features)), rng.normal(size=(2, features))

    def run():
        vision = np.stack([z[:, :2] @ a1 + rng.normal(size=(n, features)) for _ in range(layers)])
        language = np.stack([z[:, 2:4] @ a2 + rng.normal(size=(n, features)) for _ in range(layers)])
        return vision, language

    vision, language = run()
    cut_vision, cut_language = run()
    cut_vision[:window], cut_language[:window] = vision[:window], language[:window]
    path = folder / f"pair{seed}.npz"
    pidcore.write_features(path, vision=vision, language=language, target=z[:, 4:],
                           knockout={"vision": cut_vision, "language": cut_language, "target": z[:, 4:],
                                     "edges": ["image->question"], "layers": [window - 1, layers - 2]})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--estimator", default="corrected", choices=["corrected", "plugin"])
    args = parser.parse_args()
    flagged = {t: 0 for t in TERMS}
    deltas = {t: [] for t in TERMS}
    widths = {t: [] for t in TERMS}
    cells = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.pairs):
            path = pair(seed, args.n, args.features, args.layers, args.window, Path(folder))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                feature_set = read_features(path)
                request = features_request(feature_set, dims=[4, 4, 2], bootstrap=args.bootstrap, seed=seed)
                result = pidcore.analyze_features(feature_set, {**request, "estimator": args.estimator})
            for entry in result["effects"]["per_layer"]:
                if entry["layer"] < args.window:
                    assert all(entry[t] == 0.0 for t in TERMS), "a layer before the window moved"
                    continue
                cells += 1
                for term in TERMS:
                    lo, hi = entry["ci"][term]
                    flagged[term] += not (lo <= 0.0 <= hi)
                    deltas[term].append(entry[term])
                    widths[term].append((hi - lo) / (2 * 1.96))
    print(f"{args.pairs} no-change pairs, n={args.n}, {args.features} features per source, layers {args.window}.."
          f"{args.layers - 1} knocked out, bootstrap {args.bootstrap}: {cells} (layer, pair) cells")
    total = 0
    for term in TERMS:
        total += flagged[term]
        spread = np.std(deltas[term]) / np.mean(widths[term])
        print(f"  {term:16s} flagged changed {flagged[term] / cells:.3f}, covers 0 {1 - flagged[term] / cells:.3f}, "
              f"spread of deltas / interval sd {spread:.2f}")
    print(f"  pooled           flagged changed {total / (cells * len(TERMS)):.3f} (bar <= 0.06), coverage "
          f"{1 - total / (cells * len(TERMS)):.3f} (bar >= 0.92)")


if __name__ == "__main__":
    main()
