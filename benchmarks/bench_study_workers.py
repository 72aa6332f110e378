"""Wall time of a study on the workers (`pidflow serve --workers W`, private Redis), with and without
question shards (PIDFLOW_EXTRACT_SHARD): which worker extracted which questions, extraction and analysis
worker-seconds, and the report checked equal between the two settings (headline table).

    .venv/bin/python benchmarks/bench_study_workers.py                      # 1 task x 200 questions, k = 9
    .venv/bin/python benchmarks/bench_study_workers.py --tasks shape color --n 400 --shard 64 --workers 2

Prints the load average: on a shared machine the wall time depends on what else runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(study: dict, workers: int, shard: int) -> tuple[float, dict]:
    import httpx

    from app.served import served

    with served(workers=workers, env={"PIDFLOW_EXTRACT_SHARD": str(shard)}, timeout_s=300) as root:
        started = time.perf_counter()
        info = httpx.post(f"{root}/api/v1/studies", json=study, timeout=60).json()
        while (status := httpx.get(f"{root}{info['status_url']}", timeout=30).json())["state"] not in (
                "succeeded", "failed"):
            time.sleep(0.5)
        wall = time.perf_counter() - started
        if status["state"] == "failed":
            raise SystemExit(f"the study failed: {status['error']}")
        return wall, httpx.get(f"{root}{info['report_url']}", timeout=60).json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["shape"])
    parser.add_argument("--n", type=int, default=200, help="questions per task")
    parser.add_argument("--k", type=int, default=9, help="sweep window (layers)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard", type=int, default=48, help="questions per shard in the sharded run")
    parser.add_argument("--bootstrap", type=int, default=0)
    args = parser.parse_args()
    study = {"models": ["demo"], "tasks": args.tasks, "n_questions": args.n, "gaussianize": "copula",
             "sweep": {"edges": ["image->question"], "k": args.k}, "recipes": ["pidflow", "seed"],
             "bootstrap": args.bootstrap}
    print(f"study: {args.tasks} x {args.n} questions, k = {args.k} sweep, both recipes, {args.workers} workers; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    reports = {}
    for shard in (0, args.shard):
        wall, report = run(study, args.workers, shard)
        reports[shard] = report
        timing = report["timing"]
        who = Counter(entry["worker"].split("@")[0] for entry in timing.get("shards", []))
        print(f"shard {shard or 'off':>4}: wall {wall:6.1f} s (study {timing['wall_s']:.1f} s), extraction "
              f"{timing['extract_s']:.1f} worker-s, analyses {timing['analyze_s']:.1f} worker-s (plan "
              f"{timing.get('plan_s', 0):.1f} s; {timing.get('analysis_units', 0)} units on the cpu queue, "
              f"{timing.get('analysis_cpu_s', 0):.1f} CPU-s)"
              + (f", shards per worker {dict(who)}" if who else "") + f"; load {os.getloadavg()[0]:.1f}")
    same = [row["shares"] for row in reports[0]["headline"]] == [row["shares"] for row in reports[args.shard]["headline"]]
    print(f"headline shares identical with and without shards: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
