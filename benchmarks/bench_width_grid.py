"""The default analysis across widths, sample sizes and signal strengths, against a known answer (bits).

Usage: .venv/bin/python benchmarks/bench_width_grid.py [--widths 512 1024 4096] [--ns 400 1000]
       [--signals 8 3] [--seeds 30] [--bootstrap 200]

Per cell (features per source, questions, per-direction signal in units of a feature's noise): one layer of
pidcore.synthetic.real_width_system per seed, the default layerwise (dims (8, 8, 4)). Prints the total's mean
error and its standard error, its 95% interval's coverage of the truth, and the pca-loss warning: how often it
fired where it was needed (the interval missed the truth from below) and where it was not, and the ratio of
the bits it stated (summed over sources: what the de-attenuation added, pidcore.reduce.deattenuate) to the
loss of the total (median over runs where both > 0).
Bars (issue 16): coverage >= 0.92 and |bias| <= 0.03 + 2 se, or else a warning firing in >= 95% of runs that
need it, <= 10% of runs that do not, with the stated loss within +-50%.
"""

import argparse
import time
import warnings

import numpy as np

from pidcore.gaussianize.latents import PipelineWarning
from pidcore.pipeline.layerwise import layerwise
from pidcore.synthetic import real_width_system


def one(width: int, n: int, signal: float, seed: int, bootstrap: int) -> tuple[float, bool, float]:
    """(error of the total, interval covers the truth, stated pca loss in bits or 0)."""
    system = real_width_system(n=n, width=width, layers=1, signal=(signal, signal), seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = layerwise(system.x1, system.x2, system.y, dims=(8, 8, 4), bootstrap=bootstrap, seed=seed)
    layer, truth = result.layers[0], system.truth[0].total
    lo, hi = layer.ci["total"]
    stated = sum(w.message.bits for w in caught
                 if isinstance(w.message, PipelineWarning) and w.message.kind == "pca-loss" and w.message.bits)
    return layer.pid.total - truth, bool(lo <= truth <= hi), float(stated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--ns", type=int, nargs="+", default=[400, 1000])
    parser.add_argument("--signals", type=float, nargs="+", default=[8.0, 3.0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    print("width     n signal | mean error (se)  coverage | warning: fired if needed, if not; stated/actual | CPU-s")
    for width in args.widths:
        for n in args.ns:
            for signal in args.signals:
                start = time.process_time()
                runs = [one(width, n, signal, seed, args.bootstrap) for seed in range(args.seeds)]
                errors = np.array([r[0] for r in runs])
                covered = np.array([r[1] for r in runs])
                stated = np.array([r[2] for r in runs])
                needed = ~covered & (errors < 0)
                fired = stated > 0
                hit = fired[needed].mean() if needed.any() else float("nan")
                false = fired[~needed].mean() if (~needed).any() else float("nan")
                both = fired & (errors < 0)
                ratio = float(np.median(stated[both] / -errors[both])) if both.any() else float("nan")
                print(f"{width:5d} {n:5d} {signal:6.1f} | {errors.mean():+.3f} ({errors.std(ddof=1) / np.sqrt(len(runs)):.3f})"
                      f"  {covered.mean():8.2f} | {hit:5.2f} ({needed.sum()} needed), {false:4.2f}; {ratio:5.2f}"
                      f" | {(time.process_time() - start) / len(runs):.1f} per run", flush=True)


if __name__ == "__main__":
    main()
