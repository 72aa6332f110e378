"""CPU and wall time of the README's demo study, exactly as a newcomer runs it: `pidflow study --task all`
(every easy-VQA task, 400 questions each, the seed cut and the sweep of the run plan: windows of at most a
third of the decoder, 8 distinct runs per task on the 6-layer demo; both recipes), as a child process.

    .venv/bin/python benchmarks/bench_study.py                         # the README's command
    .venv/bin/python benchmarks/bench_study.py -- --gaussianize auto   # extra `pidflow study` arguments
    .venv/bin/python benchmarks/bench_study.py --before /tmp/before    # also a checkout of older code (git
                                                                       # worktree add /tmp/before <commit>)

CPU: user + system seconds of the command and every process it waited for (resource RUSAGE_CHILDREN);
wall: from start to exit. Prints the load average before and after (the figures are for a quiet machine
only when it stayed near 0) and where the time went (the report's extraction / analyses seconds).
Target (issue 18.4): <= 500 CPU-s and <= 5 minutes wall on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_COMMAND = ["study", "--task", "all"]


def measure(tree: Path, extra: list[str], label: str) -> dict:
    """Run `pidflow study --task all <extra> -o <tmp>` with `tree`'s code (this interpreter, cwd = tree, so
    its packages come first on the path) and return {label, cpu_s, wall_s, load, timing, rc}."""
    with tempfile.TemporaryDirectory(prefix="bench-study-") as out:
        argv = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))",
                *README_COMMAND, *extra, "--no-resume", "-o", out]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "PYTHONPATH": str(tree)})
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_after = os.getloadavg()
        report = Path(out) / "study.json"
        timing = json.loads(report.read_text())["timing"] if report.exists() else {}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"label": label, "rc": done.returncode, "cpu_s": cpu, "wall_s": wall, "load": (load_before, load_after),
            "timing": timing, "tail": done.stdout.strip().splitlines()[-1:] if done.stdout else []}


def line(result: dict) -> str:
    timing = result["timing"]
    spent = (f"; extraction {timing.get('extract_s', 0):.0f} s, analyses {timing.get('analyze_s', 0):.0f} s "
             f"(wall, summed over parts)") if timing else ""
    return (f"{result['label']}: {result['cpu_s']:.0f} CPU-s, wall {result['wall_s']:.0f} s "
            f"({result['wall_s'] / 60:.1f} min){spent}; load average {result['load'][0][0]:.2f} -> "
            f"{result['load'][1][0]:.2f}; exit {result['rc']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", metavar="TREE", help="also measure this checkout (older code), first")
    parser.add_argument("extra", nargs="*", help="extra `pidflow study` arguments (after --)")
    args = parser.parse_args()
    print(f"`pidflow study --task all{' ' + ' '.join(args.extra) if args.extra else ''}` on the demo model; "
          f"{os.cpu_count()} CPUs")
    results = []
    if args.before:
        results.append(measure(Path(args.before).resolve(), args.extra, f"before ({args.before})"))
        print(line(results[-1]), flush=True)
    results.append(measure(ROOT, args.extra, "after (this checkout)"))
    print(line(results[-1]), flush=True)
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
