"""Wall time of a whole study on the demo model: every easy-VQA task, the seed cut and a full knockout sweep,
both recipes (pidflow default and seed-faithful), in this process (pidcore.study.run.run_study).

    .venv/bin/python benchmarks/bench_study.py                 # defaults: 400 questions per task, k = 9
    .venv/bin/python benchmarks/bench_study.py --k 3 --n 200   # a denser sweep, fewer questions

Target (issue 9): <= 10 minutes on a 2-core CPU. Prints the load average: on a shared machine the wall
time depends on what else runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="questions per task")
    parser.add_argument("--k", type=int, default=9, help="sweep window (layers)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for extraction")
    parser.add_argument("--gaussianize", default="auto", choices=["auto", "none", "copula", "flow"])
    parser.add_argument("--no-reuse", dest="no_reuse", action="store_true",
                        help="(for comparison) extract every run with its own full forward passes")
    parser.add_argument("-o", "--output-dir", help="also write study.json/.csv/.html there")
    args = parser.parse_args()

    import torch

    from pidcore.data import list_datasets
    from pidcore.study.run import default_request, run_study

    torch.set_num_threads(args.threads)
    tasks = list_datasets()["easy-vqa"].task_names
    request = default_request(tasks=tasks, n_questions=args.n, gaussianize=args.gaussianize,
                              sweep={"edges": ["image->question"], "k": args.k})
    if args.no_reuse:
        import pidcore.extract.multirun as multirun

        original = multirun.extract_runs
        multirun.extract_runs = lambda *a, **kw: original(*a, **{**kw, "reuse": False})
    load_before = os.getloadavg()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_study(request, progress=True)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    runs = {part["task"]: part["runs"] for part in report["parts"]}
    distinct = {task: len({run["key"] for run in task_runs}) for task, task_runs in runs.items()}
    analyses = sum(distinct.values()) * len(request.recipes)
    print(f"demo model, {len(tasks)} easy-VQA tasks x {args.n} questions, sweep k={args.k} "
          f"({len(next(iter(runs.values())))} runs per task, {sum(distinct.values()) // len(tasks)} distinct "
          f"extractions per task), recipes {', '.join(request.recipes)}: {analyses} layer-wise analyses")
    timing = report["timing"]
    print(f"wall {wall:.1f} s = {wall / 60:.2f} min (extraction {timing['extract_s']:.1f} s, "
          f"analyses {timing['analyze_s']:.1f} s); torch threads {args.threads}; prefix reuse "
          f"{'off' if args.no_reuse else 'on'}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(2-core machine shared with other jobs: figures vary with what else runs)")
    if args.output_dir:
        from app.study_cli import write_report

        print("written:", ", ".join(str(p) for p in write_report(report, args.output_dir).values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
