"""Extraction throughput (questions/s) on this machine: plain forward vs pooling hooks vs hooks + knockout.

Uses the demo model when its weights are present, else the demo architecture with random weights (same
compute). The same pre-encoded batches go through each variant; repeats interleave and the median counts.

    .venv/bin/python benchmarks/bench_extract.py --n 96 --batch-size 16 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _adapter(model: str | None, tmp: str):
    from pidcore.extract import load_adapter

    if model:
        return load_adapter(model)
    try:
        return load_adapter("demo")
    except FileNotFoundError:
        from pidcore.demo.build import DemoArchitecture, build_llava, save_demo

        network, processor = build_llava(DemoArchitecture())
        save_demo(network, processor, tmp, DemoArchitecture())
        return load_adapter(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model (default: demo, or its architecture with random weights)")
    parser.add_argument("--n", type=int, default=96, help="questions")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pidcore.data import answer_set, load_questions
    from pidcore.extract import Knockout, extract
    from pidcore.extract.pooling import PooledStates, pooling_hooks

    with tempfile.TemporaryDirectory() as tmp:
        adapter = _adapter(args.model, tmp)
        items = load_questions("easy-vqa", ["color", "shape"], n=args.n // 2, seed=0)
        batches = [adapter.encode(items[i:i + args.batch_size]) for i in range(0, len(items), args.batch_size)]
        last = adapter.num_layers - 1
        knockout = Knockout(["image->question", "image->last", "question->last"], (1, last))
        pooled = PooledStates(adapter.num_layers)

        def plain():
            for inputs, _ in batches:
                adapter.model(**inputs, use_cache=False, logits_to_keep=1)

        def hooked(with_knockout: bool):
            def run():
                with pooling_hooks(adapter.decoder_layers, adapter.final_norm, pooled):
                    context = knockout.applied(adapter.decoder_layers, adapter.dtype) if with_knockout else None
                    set_roles = context.__enter__() if context else None
                    try:
                        for inputs, roles in batches:
                            pooled.start_batch(roles)
                            if set_roles:
                                set_roles(roles)
                            adapter.model(**inputs, use_cache=False, logits_to_keep=1)
                            pooled.stacked()
                    finally:
                        if context:
                            context.__exit__(None, None, None)
            return run

        variants = {"plain forward": plain, "pooling hooks": hooked(False), "hooks + knockout": hooked(True)}
        times = {name: [] for name in variants}
        with torch.inference_mode():
            plain()  # warm-up
            for _ in range(args.repeats):
                for name, run in variants.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        extract(adapter, items, answers=answer_set("easy-vqa"), batch_size=args.batch_size)
        end_to_end = time.perf_counter() - start

    model = adapter.describe()
    print(f"model {model['name']} ({model['num_layers']} layers, hidden {model['hidden_size']}), "
          f"{len(items)} questions, batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}")
    base = statistics.median(times["plain forward"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<18} {len(items) / median:8.1f} questions/s   overhead {100 * (median / base - 1):+6.1f}%")
    print(f"{'extract() total':<18} {len(items) / end_to_end:8.1f} questions/s   (image loading + processor included)")


if __name__ == "__main__":
    main()
