"""PID Flow at the width of a 7B model, against a known answer (bits).

Usage: .venv/bin/python benchmarks/bench_real_width.py [--layers 33] [--n 1000] [--width 4096] [--seeds 0]
       [--signal 4 8] [--dims 8 8 4] [--bootstrap 200] [--tree PATH]

Builds pidcore.synthetic.real_width_system (float16 features: latents along random directions with a
per-direction signal of --signal times a feature's noise, rising to mid-depth; 3 nuisance directions of
variance 20-50, a power-law background, 2% "massive" heavy-tailed features), then runs the default
layerwise analysis (gaussianize="auto", bias-corrected, --bootstrap rounds) in a subprocess whose pidcore
comes from --tree (default: this checkout; e.g. a `git worktree` of an older commit for "before").
Prints per layer: signal, the Gaussianization used, each part's error (estimate - truth), whether the
total's 95% interval covers the truth; then the summary (worst |error| per part, layers within 0.10 bits,
coverage) and CPU-seconds per stage. The truth is the PID of the features themselves (pidcore.synthetic.feature_pid): every signal direction is
among the population PCA's leading --dims components, so the population reduction keeps it all.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("redundancy", "unique1", "unique2", "synergy", "total")

ANALYSE = """
import json, sys, time, warnings
import numpy as np
from pidcore.pipeline.layerwise import layerwise
data = np.load(sys.argv[1])
layers = int(data["layers"])
x1 = [data[f"x1_{i}"] for i in range(layers)]
x2 = [data[f"x2_{i}"] for i in range(layers)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.process_time()
    result = layerwise(x1, x2, data["y"], dims=tuple(int(d) for d in data["dims"]), bootstrap=int(data["bootstrap"]))
    cpu = time.process_time() - start
rows = [{"pid": r.pid.as_dict(), "ci": {k: list(v) for k, v in r.ci.items()}, "mode": r.gaussianization}
        for r in result.layers]
plan = getattr(result, "plan", None)
json.dump({"rows": rows, "cpu_s": cpu, "timings": result.timings, "plan": plan.describe() if plan else None,
           "warnings": sorted({str(w.message)[:160] for w in caught})}, sys.stdout)
"""


def analyse(path: Path, tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ANALYSE, str(path)], env=env, cwd=tree, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--signal", type=float, nargs=2, default=(4.0, 8.0))
    parser.add_argument("--dims", type=int, nargs=3, default=(8, 8, 4))
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree whose pidcore analyses")
    args = parser.parse_args()
    from pidcore.synthetic import real_width_system

    errors, within, covered, count, cpu = {p: [] for p in PARTS}, 0, 0, 0, []
    for seed in args.seeds:
        start = time.perf_counter()
        system = real_width_system(n=args.n, width=args.width, layers=args.layers, signal=tuple(args.signal),
                                   seed=seed, dtype=np.float16)
        truths = [t.as_dict() for t in system.truth]
        print(f"seed {seed}: generated in {time.perf_counter() - start:.0f} s; truth at the weakest signal " +
              ", ".join(f"{k} {v:.3f}" for k, v in truths[0].items()) + "; latent PID " +
              ", ".join(f"{k} {v:.3f}" for k, v in system.latent.as_dict().items()), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "system.npz"
            arrays = {f"x1_{i}": x for i, x in enumerate(system.x1)} | {f"x2_{i}": x for i, x in enumerate(system.x2)}
            np.savez(path, y=system.y, layers=args.layers, dims=np.array(args.dims), bootstrap=args.bootstrap,
                     **arrays)
            del system, arrays
            out = analyse(path, args.tree)
        cpu.append(out["cpu_s"])
        print(f"  plan: {out['plan']}; CPU {out['cpu_s']:.1f} s; stages (wall) " +
              ", ".join(f"{k} {v:.1f} s" for k, v in out["timings"].items()))
        for text in out["warnings"]:
            print(f"  warning: {text}")
        strength = np.linspace(0.0, 1.0, args.layers)
        strength = args.signal[0] + (args.signal[1] - args.signal[0]) * np.sin(np.pi * strength)
        print("  layer signal mode                         " + " ".join(f"{p[:8]:>8s}" for p in PARTS) + "  covers")
        for layer, row in enumerate(out["rows"]):
            truth = truths[layer]
            error = {p: row["pid"][p] - truth[p] for p in PARTS}
            lo, hi = row["ci"].get("total", (np.nan, np.nan))
            hit = bool(lo <= truth["total"] <= hi)
            for p in PARTS:
                errors[p].append(error[p])
            within += all(abs(e) <= 0.10 for e in error.values())
            covered += hit
            count += 1
            print(f"  {layer:5d} {strength[layer]:6.2f} {row['mode'][:28]:28s} " +
                  " ".join(f"{error[p]:+8.3f}" for p in PARTS) + f"  {'yes' if hit else 'NO'}")
    print("summary: worst |error| " + ", ".join(f"{p} {np.max(np.abs(errors[p])):.3f}" for p in PARTS))
    print("         mean error    " + ", ".join(f"{p} {np.mean(errors[p]):+.3f}" for p in PARTS))
    print(f"         layers with every part within 0.10 bits: {within}/{count}; total's interval covers the truth "
          f"on {covered}/{count}; CPU per analysis {np.mean(cpu):.1f} s ({args.layers} layers, n={args.n}, "
          f"width {args.width}, bootstrap {args.bootstrap})")


if __name__ == "__main__":
    main()
