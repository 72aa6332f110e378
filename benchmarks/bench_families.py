"""Per family: extraction throughput (questions/s) of the tiny test checkpoints, without and with an
image->question knockout, and the knockout's overhead. Tiny models (3 decoder layers, width 64) measure
pidflow's own per-batch work (processor, role alignment, hooks, mask edits) more than model compute.

    .venv/bin/python benchmarks/bench_families.py --n 24 --batch-size 8 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from pidcore.extract import Knockout, extract, load_adapter
    from tests.extract.conftest import ANSWERS, make_items, save_tiny_llava, save_tiny_llava_next
    from tests.extract.tiny_families import BUILDERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    savers = {"llava": save_tiny_llava, "llava_next": save_tiny_llava_next, **BUILDERS}
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(Path(tmp), n=args.n, sizes=((16, 16), (32, 16), (16, 32)))
        print(f"{'family':<18} {'q/s':>8} {'q/s ko':>8} {'ko overhead':>12}")
        for model_type in args.families or list(savers):
            folder = Path(tmp) / model_type
            folder.mkdir()
            savers[model_type](folder)
            adapter = load_adapter(str(folder))
            knockout = Knockout(["image->question"], (1, 2))
            timings = {"plain": [], "ko": []}
            extract(adapter, items[:args.batch_size], answers=ANSWERS, batch_size=args.batch_size)  # warm-up
            for _ in range(args.repeats):
                for name, option in (("plain", None), ("ko", knockout)):
                    start = time.perf_counter()
                    extract(adapter, items, answers=ANSWERS, batch_size=args.batch_size, knockout=option)
                    timings[name].append(time.perf_counter() - start)
            plain, ko = (statistics.median(timings[name]) for name in ("plain", "ko"))
            print(f"{model_type:<18} {args.n / plain:8.1f} {args.n / ko:8.1f} {100 * (ko / plain - 1):+11.1f}%")


if __name__ == "__main__":
    main()
