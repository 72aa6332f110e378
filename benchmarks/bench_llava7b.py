"""Extraction speed of LLaVA-1.5-7B- and LLaVA-1.6-7B-shaped models with random weights: now
benchmarks/gpu_bench.py (what benchmarks/gpu_check.sh runs on a lent GPU), with this script's old flags.

Fixed there (issue 17): the projection counts every run of a (model, task): baseline, seed cut and the
32-window sweep (34 runs, 710 decoder-layer passes per question with prefix reuse; this script used to leave
out the seed cut: 678); each model is projected with its own family's measured cost (LLaVA-1.6 has about
4x LLaVA-1.5's tokens: 2,340 image tokens for a 640x480 image against 576; it used to take one family's cost
for both); on a CPU the projection comes from CPU-seconds, not wall time (on a GPU from synchronised wall
time); a knockout line is printed once (with --layers 2 the two windows were the same and printed twice).
The vision tower now has CLIP ViT-L/14-336's shape (it is re-run by every run) instead of a thin one.

    .venv/bin/python benchmarks/bench_llava7b.py --layers 2 --batch-sizes 1   # CPU, 2 of 32 layers
    python benchmarks/bench_llava7b.py --device cuda --family both            # = gpu_bench.py on a GPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers to build (default: 2 on CPU, 32 on GPU)")
    parser.add_argument("--questions", type=int, default=None, help="(ignored: the batch sizes decide)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="time these batch sizes (default on a GPU: the auto search)")
    parser.add_argument("--family", choices=["llava", "next", "both"], default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = parser.parse_args(argv)
    import gpu_bench

    cuda = args.device.startswith("cuda")
    forwarded = ["--device", args.device, "--family", args.family,
                 "--dtype", args.dtype or ("bfloat16" if cuda else "float32"),
                 "--layers", str(args.layers or (32 if cuda else 2))]
    if args.batch_sizes or not cuda:
        forwarded += ["--batch-sizes", *map(str, args.batch_sizes or [1])]
    if args.threads:
        forwarded += ["--threads", str(args.threads)]
    return gpu_bench.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
