"""Stability of the default analysis (the Gaussianization plan) on a real-width known system (bits).

Usage: .venv/bin/python benchmarks/bench_plan_stability.py [--layers 33] [--n 1000] [--width 4096]
       [--perturbations 20] [--batches 1 8 33]

1. Perturbation: every source feature multiplied by (1 + 1e-6 N(0, 1)) with --perturbations seeds; prints
   how many choices changed (and whether each such choice was a recorded close call) and the largest change
   of any part on any layer (bar: 0 changes outside a margin, parts within 0.01 bits).
2. Batching: the layers analysed in batches of each size with the plan made once (as the service does);
   prints the largest difference from the whole analysis (bar: 0.0, identical).
"""

import argparse
import time
import warnings

import numpy as np

from pidcore.pipeline.layerwise import gaussianization_plan, layerwise
from pidcore.synthetic import real_width_system

PARTS = ("redundancy", "unique1", "unique2", "synergy", "total")


def run(x1, x2, y, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return layerwise(x1, x2, y, dims=(8, 8, 4), bootstrap=0, **options)


def largest_change(a, b) -> float:
    return max(abs(getattr(p.pid, part) - getattr(q.pid, part))
               for p, q in zip(a.layers, b.layers, strict=True) for part in PARTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--perturbations", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 33])
    args = parser.parse_args()
    system = real_width_system(n=args.n, width=args.width, layers=args.layers, dtype=np.float16)
    x1 = [x.astype(float) for x in system.x1]
    x2 = [x.astype(float) for x in system.x2]
    start = time.process_time()
    base = run(x1, x2, system.y)
    print(f"{args.layers} layers x {args.n} questions x {args.width} features: plan {base.plan.describe()}; "
          f"CPU {time.process_time() - start:.1f} s")
    for d in base.plan.decisions:
        print(f"  {d.variable}: {d.choice} (statistic {d.statistic:.3g}, threshold {d.threshold:.3g}, margin "
              f"{d.margin:.3g}{', close' if d.close else ''})")
    changed, unexplained, worst = 0, 0, 0.0
    for seed in range(args.perturbations):
        rng = np.random.default_rng(1000 + seed)
        nudged = [x * (1 + 1e-6 * rng.standard_normal(x.shape)) for x in x1]
        other = run(nudged, [x * (1 + 1e-6 * rng.standard_normal(x.shape)) for x in x2], system.y)
        for a, b in zip(base.plan.decisions, other.plan.decisions, strict=True):
            if a.choice != b.choice:
                changed += 1
                unexplained += not (a.close or b.close)
        worst = max(worst, largest_change(base, other))
    print(f"perturbation 1e-6, {args.perturbations} seeds: {changed} choices changed ({unexplained} outside a "
          f"recorded margin); largest change of a part {worst:.2e} bits")
    plan = gaussianization_plan(x1, x2, system.y, dims=(8, 8, 4), bootstrap=0)
    for size in args.batches:
        differences = []
        for first in range(0, args.layers, size):
            layers = list(range(first, min(first + size, args.layers)))
            batch = run([x1[i] for i in layers], [x2[i] for i in layers], system.y, plan=plan, layer_ids=layers)
            differences += [abs(getattr(batch.layers[k].pid, part) - getattr(base.layers[layer].pid, part))
                            for k, layer in enumerate(layers) for part in PARTS]
        print(f"batches of {size}: largest difference from the whole analysis {max(differences):.1e} bits")


if __name__ == "__main__":
    main()
