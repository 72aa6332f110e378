"""Extraction on a GPU at the seed study's shapes: LLaVA-1.5-7B- and LLaVA-1.6-7B-shaped models with random
weights (no download), tokens as their processors give them, the batch-size search (pidcore.extract.loading,
as PIDFLOW_BATCH_SIZE=auto runs it), peak GPU memory, prefix reuse, and the whole study's projected GPU-hours
by family counting every run (baseline, seed cut, a 9-layer window centred on each of the 32 decoder layers:
34 runs per model and task).

Run by benchmarks/gpu_check.sh on a lent GPU (about 4-6 minutes on one H100/H200):

    python benchmarks/gpu_bench.py                 # cuda, bfloat16, 32 layers, both families
    python benchmarks/gpu_bench.py --tiny          # CPU smoke test: 2 tiny layers, same token counts

Shapes (full mode): vision tower CLIP ViT-L/14 at 336 px (1024 wide, 24 layers, 16 heads), projector to
4096, decoder Llama-7B (4096 wide, 32 layers, 32 heads, MLP 11008); a word-level tokenizer over the
LLaVA-1.5 prompt (vocabulary of ~100 instead of 32,064: the embedding and the one-position LM head are
cheap either way). Images 640x480 (a typical GQA image): LLaVA-1.5's processor gives 576 image tokens, the
LLaVA-1.6 (anyres, 336 tiles on a 672x672 grid, unpadded to 4:3) one 2,340.

The projection uses measured per-question costs of whole extract_runs calls on one GPU (wall time,
synchronised: processor, vision tower, decoder and pooling included) and the cost of a knocked-out run as a
function of its window's first layer (fitted from the measured seed cut and a late window with prefix
reuse); it counts every run of the study's plan (pidcore.study.run.plan_runs) for each model with its own
family's cost. The CPU-side analysis is not part of this figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = {"models": {"LLaVA-1.5-7B": "llava", "LLaVA-1.6-7B": "next"}, "tasks": 6, "questions": 1000, "k": 9}
IMAGE_SIZE = (640, 480)  # a typical GQA image
ANSWERS = ["yes", "no", "red", "blue", "green", "left", "right", "top", "bottom", "metal", "wood", "large", "small"]
QUESTIONS = ["is the car red or blue ?", "which side is the man on ?", "what material is the table made of ?",
             "is the large cup to the left of the plate ?", "are there both cars and trucks in the picture ?",
             "what color is the shirt the woman is wearing ?", "is the sky cloudy or clear ?",
             "which is bigger , the dog or the cat ?"]


@dataclass(frozen=True)
class Shape:
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int


FULL = Shape(1024, 24, 16, 4096, 32, 32, 11008)
TINY = Shape(32, 1, 2, 64, 2, 4, 128)


def window_firsts(layers: int, k: int) -> list[int]:
    """First decoder layer of every knocked-out run of a study's plan: the seed cut (0) and a k-layer window
    centred on each layer (as pidcore.study.run.sweep_windows clips them)."""
    before = (k - 1) // 2
    return [0] + [max(0, centre - before) for centre in range(layers)]


def layer_passes(layers: int, k: int) -> tuple[int, int]:
    """Decoder-layer passes per question of one (model, task): (plain, with prefix reuse)."""
    firsts = window_firsts(layers, k)
    return layers * (1 + len(firsts)), layers + sum(layers - first for first in firsts)


def build(family: str, shape: Shape, dtype, device):
    """An adapter over a random LLaVA-1.5- or LLaVA-1.6-shaped model built on `device` (no files)."""
    import torch
    import transformers

    from pidcore.demo.build import build_tokenizer
    from pidcore.extract.adapters import LlavaAdapter, LlavaNextAdapter
    from pidcore.extract.families import LLAVA_PROMPT

    words = sorted({w for text in (*QUESTIONS, LLAVA_PROMPT.replace("<image>", "").replace("{question}", ""),
                                   *ANSWERS) for w in text.lower().replace(":", " : ").replace(".", " . ").split()})
    tokenizer = build_tokenizer(words)
    tokenizer.model_max_length = 8192
    vision = transformers.CLIPVisionConfig(hidden_size=shape.vision_hidden, intermediate_size=4 * shape.vision_hidden,
                                           num_hidden_layers=shape.vision_layers,
                                           num_attention_heads=shape.vision_heads, image_size=336, patch_size=14,
                                           projection_dim=shape.vision_hidden)
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=shape.text_hidden,
                                    intermediate_size=shape.text_intermediate, num_hidden_layers=shape.text_layers,
                                    num_attention_heads=shape.text_heads, num_key_value_heads=shape.text_heads,
                                    max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                                    tie_word_embeddings=False)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    crop = {"height": 336, "width": 336}
    torch.manual_seed(0)
    if family == "llava":
        config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                                          image_seq_length=576, vision_feature_select_strategy="default",
                                          vision_feature_layer=-2)
        image_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        processor = transformers.LlavaProcessor(image_processor=image_class(size={"shortest_edge": 336}, crop_size=crop),
                                                tokenizer=tokenizer, patch_size=14,
                                                vision_feature_select_strategy="default", num_additional_image_tokens=1)
        model_class, adapter_class = transformers.LlavaForConditionalGeneration, LlavaAdapter
    else:
        pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # LLaVA-1.6's
        config = transformers.LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                                              image_grid_pinpoints=pinpoints,
                                              vision_feature_select_strategy="default", vision_feature_layer=-2)
        image_class = getattr(transformers, "LlavaNextImageProcessorPil", None) or transformers.LlavaNextImageProcessor
        processor = transformers.LlavaNextProcessor(
            image_processor=image_class(size={"shortest_edge": 336}, crop_size=crop, image_grid_pinpoints=pinpoints),
            tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)
        model_class, adapter_class = transformers.LlavaNextForConditionalGeneration, LlavaNextAdapter
    with torch.device(device):
        model = model_class(config).to(dtype)
    return adapter_class(model, processor, name=f"{family}-7b-shaped-{shape.text_layers}L-random", revision="random",
                         prompt_template=LLAVA_PROMPT)


def make_items(n: int, folder: Path, distinct: int = 8) -> list:
    """n questions over `distinct` random 640x480 images."""
    import numpy as np
    from PIL import Image

    from pidcore.data.items import VQAItem

    rng = np.random.default_rng(0)
    paths = []
    for index in range(distinct):
        path = folder / f"gqa-like-{index}.png"
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return [VQAItem(qid=f"q{i}", dataset="gqa", task="bench", question=QUESTIONS[i % len(QUESTIONS)],
                    answer=ANSWERS[i % len(ANSWERS)], image_id=f"img{i % distinct}", image_path=paths[i % distinct])
            for i in range(n)]


class Clock:
    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")

    def __call__(self, fn) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of fn(), GPU work finished."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu


def peak_mib(device) -> float:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def search_batch(adapter, items, answers, maximum: int, device) -> dict:
    """pidcore.extract.loading's auto search on plain baseline forwards (pooling hooks on): sizes tried,
    seconds and peak memory of each, the size settled on."""
    import torch

    from pidcore.extract.loading import BatchSizer, CudaProbe, adapter_key, is_out_of_memory
    from pidcore.extract.pooling import PooledStates, pooling_hooks

    probe = CudaProbe.for_adapter(adapter)
    sizer = BatchSizer("auto", key=adapter_key(adapter), probe=probe, maximum=maximum)
    pooled = PooledStates(adapter.num_layers, "mean")
    clock, tried, used = Clock(device), [], 0
    with pooling_hooks(adapter.decoder_layers, adapter.final_norm, pooled), torch.inference_mode():
        while sizer.searching and used + sizer.size <= len(items):
            size = sizer.take(len(items) - used)
            sizer.before_batch()
            if str(device).startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()

            def forward(chunk=items[used:used + size]):
                inputs, roles = adapter.encode(chunk)
                pooled.start_batch(roles)
                adapter.model(**inputs, use_cache=False, logits_to_keep=1)
                pooled.stacked()
            try:
                seconds, _ = clock(forward)
            except Exception as error:  # noqa: BLE001 - out of memory is what the search is for
                if not is_out_of_memory(error):
                    raise
                tried.append({"batch": size, "out_of_memory": True})
                sizer.out_of_memory(size, error)
                continue
            used += size
            tried.append({"batch": size, "s": seconds, "peak_mib": peak_mib(device)})
            sizer.succeeded(size)
    sizer.finish()
    return {"tried": tried, "batch": sizer.size, "probe": probe is not None}


def measure_family(family: str, args, shape: Shape, dtype, device, folder: Path) -> dict:
    import torch

    from pidcore.extract import Knockout
    from pidcore.extract.multirun import extract_runs

    clock = Clock(device)
    cost = 0 if str(device).startswith("cuda") else 1  # GPU: synchronised wall seconds; CPU: CPU-seconds

    def seconds(fn) -> float:
        return clock(fn)[cost]
    started = time.perf_counter()
    adapter = build(family, shape, dtype, device)
    layers = adapter.num_layers
    out = {"family": family, "build_s": time.perf_counter() - started, "layers_built": layers,
           "cost_measure": ("wall", "cpu")[cost]}
    sample = make_items(1, folder)
    inputs, roles = adapter.encode(sample)
    out["tokens"], out["image_tokens"] = int(inputs["input_ids"].shape[1]), int(roles.image.sum())
    answers = ANSWERS
    if args.batch_sizes:
        out["search"] = {"tried": [], "batch": args.batch_sizes[0], "probe": False}
    else:
        out["search"] = search_batch(adapter, make_items(args.search_questions, folder), answers, args.max_batch, device)
    batch = out["search"]["batch"]
    timings = []
    for size in args.batch_sizes or [batch]:
        items = make_items(size * args.timed_batches, folder)
        if not args.tiny:  # warm-up (kernels, allocator)
            extract_runs(adapter, items[:size], answers=answers, runs={"baseline": None}, batch_size=size)
        if str(device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        wall, cpu = clock(lambda items=items, size=size: extract_runs(
            adapter, items, answers=answers, runs={"baseline": None}, batch_size=size))
        timings.append({"batch": size, "baseline_s_per_q": (wall, cpu)[cost] / len(items), "wall_s_per_q": wall / len(items),
                        "cpu_s_per_q": cpu / len(items), "questions_per_s": len(items) / wall,
                        "peak_mib": peak_mib(device)})
    out["timings"] = timings
    best = min(timings, key=lambda t: t["baseline_s_per_q"])
    size = best["batch"]
    items = make_items(size, folder)
    late = min(max(1, layers - 1 - STUDY["k"] // 2 - (STUDY["k"] - 1) // 2), layers - 1)  # the last full window's first
    runs = {"baseline": None, "seed-cut": Knockout(["image->question"], (0, layers - 1)),
            "late": Knockout(["image->question"], (late, layers - 1))}
    reuse = {}
    for name, flag in (("plain", False), ("reuse", True)):
        reuse[name + "_s_per_q"] = seconds(lambda flag=flag: extract_runs(
            adapter, items, answers=answers, runs=runs, batch_size=size, reuse=flag)) / size
    base = best["baseline_s_per_q"]
    cut_only = seconds(lambda: extract_runs(adapter, items, answers=answers,
                                            runs={k: runs[k] for k in ("baseline", "seed-cut")}, batch_size=size)) / size
    # cost of one knocked-out run with prefix reuse, linear in the layers it computes: a + b * (layers - first)
    cut = max(cut_only - base, 1e-9)
    late_cost = max(reuse["reuse_s_per_q"] - cut_only, 1e-9)
    slope = max((cut - late_cost) / max(late, 1), 0.0)
    fixed = max(cut - slope * layers, 0.0)
    reuse.update({"late_first": late, "seed_cut_s_per_q": cut, "late_window_s_per_q": late_cost,
                  "fixed_s_per_q": fixed, "per_layer_s_per_q": slope})
    out["reuse"] = reuse
    out["per_question_s"] = base
    return out


def project(measured: dict, layers: int, k: int) -> dict:
    """Seconds per question of one (model, task)'s runs (baseline, seed cut, a window centred on each layer),
    with and without prefix reuse. A knocked-out run with reuse costs fixed + per_layer x (layers it
    computes); without reuse, as much as the baseline. Built with fewer layers (--tiny), the decoder's
    per-layer cost is carried to `layers`."""
    reuse = measured["reuse"]
    fixed, per_layer = reuse["fixed_s_per_q"], reuse["per_layer_s_per_q"]
    baseline = measured["per_question_s"] + per_layer * (layers - measured["layers_built"])
    firsts = window_firsts(layers, k)
    plain, reused = layer_passes(layers, k)
    return {"runs": 1 + len(firsts), "layer_passes_plain": plain, "layer_passes_reuse": reused,
            "s_per_question_plain": baseline * (1 + len(firsts)),
            "s_per_question_reuse": baseline + sum(fixed + per_layer * (layers - first) for first in firsts)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny decoder (2 layers), same tokens")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--dtype", help="default: bfloat16 (float32 with --tiny)")
    parser.add_argument("--family", choices=["llava", "next", "both"], default="both")
    parser.add_argument("--layers", type=int, help="decoder layers to build (default 32; --tiny 2); the projection "
                                                   "carries the measured per-layer cost to 32")
    parser.add_argument("--max-batch", type=int, help="largest batch the search tries (default 128; --tiny 2)")
    parser.add_argument("--search-questions", type=int, help="questions the search may use (default 4 x max-batch)")
    parser.add_argument("--timed-batches", type=int, help="batches timed at the size found (default 2; --tiny 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="time these sizes instead of searching")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--threads", type=int, help="torch threads (CPU)")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here (use --tiny on a CPU)", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("float32" if args.tiny else "bfloat16"))
    shape = TINY if args.tiny else FULL
    if args.layers:
        shape = replace(shape, text_layers=args.layers)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.max_batch = args.max_batch or (2 if args.tiny else 128)
    args.search_questions = args.search_questions or 4 * args.max_batch
    args.timed_batches = args.timed_batches or (1 if args.tiny else 2)
    if args.tiny:
        torch.set_num_threads(1)
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    total = torch.cuda.get_device_properties(0).total_memory / 2**30 if device.startswith("cuda") else float("nan")
    print(f"device {device} ({gpu}{f', {total:.0f} GiB' if device.startswith('cuda') else ''}), {dtype}, torch "
          f"{torch.__version__}, transformers {__import__('transformers').__version__}; decoder {shape.text_layers} "
          f"layers x {shape.text_hidden}, vision {shape.vision_layers} x {shape.vision_hidden}" +
          (" (tiny: a smoke test, not a measurement)" if args.tiny else ""))
    families = ["llava", "next"] if args.family == "both" else [args.family]
    results = {"device": device, "gpu": gpu, "dtype": str(dtype), "tiny": args.tiny, "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PIDFLOW_BATCH_CACHE"] = str(Path(tmp) / "batch_sizes.json")  # a fresh search every run
        for family in families:
            m = measure_family(family, args, shape, dtype, device, Path(tmp))
            if device.startswith("cuda"):  # the model is gone with measure_family's frame
                torch.cuda.empty_cache()
            results["families"][family] = m
            label = {"llava": "LLaVA-1.5-7B-shaped", "next": "LLaVA-1.6-7B-shaped"}[family]
            print(f"\n{label}: {m['tokens']} tokens per question ({m['image_tokens']} image tokens), built in "
                  f"{m['build_s']:.1f} s")
            steps = ", ".join(f"{t['batch']}: OOM" if t.get("out_of_memory") else
                              f"{t['batch']}: {t['s']:.2f} s, {t['peak_mib']:.0f} MiB" for t in m["search"]["tried"])
            print(f"  batch search (auto{'' if m['search']['probe'] else ', no memory probe on this device'}): "
                  f"{steps or 'skipped'} -> batch {m['search']['batch']}")
            for t in m["timings"]:
                print(f"  batch {t['batch']}: {t['questions_per_s']:.2f} questions/s (baseline run, whole "
                      f"extract_runs), peak memory {t['peak_mib']:.0f} MiB, CPU {t['cpu_s_per_q'] * 1000:.0f} ms/question")
            r = m["reuse"]
            print(f"  prefix reuse (baseline + seed cut 0-{m['layers_built'] - 1} + window from layer {r['late_first']}): "
                  f"{r['plain_s_per_q'] * 1000:.1f} ms/question plain, {r['reuse_s_per_q'] * 1000:.1f} ms with reuse; "
                  f"a knocked-out run costs {r['fixed_s_per_q'] * 1000:.2f} + {r['per_layer_s_per_q'] * 1000:.2f} ms "
                  f"per question and decoder layer computed")
    layers = 32
    print(f"\nprojected extraction of the seed study on this device ({len(STUDY['models'])} models x "
          f"{STUDY['tasks']} tasks x {STUDY['questions']} questions; per model and task: baseline, seed cut and a "
          f"{STUDY['k']}-layer window centred on each of {layers} decoder layers):")
    total_plain = total_reuse = 0.0
    results["projection"] = {}
    for model, family in STUDY["models"].items():
        if family not in results["families"]:
            continue
        p = project(results["families"][family], layers, STUDY["k"])
        questions = STUDY["tasks"] * STUDY["questions"]
        hours = (p["s_per_question_plain"] * questions / 3600, p["s_per_question_reuse"] * questions / 3600)
        total_plain, total_reuse = total_plain + hours[0], total_reuse + hours[1]
        results["projection"][model] = {**p, "hours_plain": hours[0], "hours_reuse": hours[1]}
        print(f"  {model} ({family} tokens): {p['runs']} runs, {p['layer_passes_plain']} decoder-layer passes per "
              f"question plain / {p['layer_passes_reuse']} with prefix reuse: {hours[0]:.2f} h plain, "
              f"{hours[1]:.2f} h with reuse")
    results["projection"]["total_hours"] = {"plain": total_plain, "reuse": total_reuse}
    unit = "GPU-hours" if device.startswith("cuda") else \
        ("CPU-hours of this CPU (from CPU-seconds" + ("; tiny model: meaningless as a projection)" if args.tiny else ")"))
    print(f"  whole study: {total_plain:.2f} {unit} plain, {total_reuse:.2f} with prefix reuse"
          + (f" (goal: <= 6 on one H100/H200: {'met' if total_reuse <= 6 else 'not met'})"
             if device.startswith("cuda") else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"figures written to {args.json}")
    return 0 if all(math.isfinite(v) for v in results["projection"]["total_hours"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
