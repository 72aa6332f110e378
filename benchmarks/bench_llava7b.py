"""Extraction speed of a LLaVA-1.5-7B-shaped model with random weights: questions/s, peak memory, knockout
overhead (plain vs prefix-replaying knocked-out forwards) and the projected time of the seed's whole study.

The language model has LLaVA-1.5-7B's shape (width 4096, MLP 11008, 32 heads, 576 image tokens at 336 px
with patch 14); only `--layers` decoder layers are built (the cost of a forward grows linearly with them,
so figures are projected to 32). The vision tower is kept thin (it is ~5% of a 7B forward), so the
figures are the decoder's. On this CPU keep it small:

    .venv/bin/python benchmarks/bench_llava7b.py --layers 2 --questions 2

On a GPU machine (full model in bf16, LLaVA-1.5- and LLaVA-1.6-shaped inputs, batch size search):

    python benchmarks/bench_llava7b.py --device cuda --layers 32 --dtype bfloat16 --family both \\
        --questions 64 --batch-sizes 1 2 4 8 16 32
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED_STUDY = {"models": 2, "tasks": 6, "questions": 900, "layers": 32, "k": 9}


def build(family: str, layers: int, dtype, device):
    """An adapter over a random LLaVA-1.5- or LLaVA-1.6-shaped model built in memory (no files)."""
    import torch

    from pidcore.demo.build import PROMPT_TEMPLATE, DemoArchitecture, build_processor, build_tokenizer
    from pidcore.extract.adapters import LlavaAdapter, LlavaNextAdapter

    arch = DemoArchitecture(image_size=336, patch_size=14, vision_hidden=64, vision_layers=1, vision_heads=2,
                            text_hidden=4096, text_layers=layers, text_heads=32, text_intermediate=11008)
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    if family == "llava":
        from transformers import LlavaForConditionalGeneration

        processor = build_processor(arch, tokenizer)
        config = _config(arch, tokenizer, next_=False)
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).to(dtype)
        adapter_class = LlavaAdapter
    else:
        from transformers import (
            LlavaNextForConditionalGeneration,
            LlavaNextImageProcessorPil,
            LlavaNextProcessor,
        )

        pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
        config = _config(arch, tokenizer, next_=True, pinpoints=pinpoints)
        with torch.device(device):
            model = LlavaNextForConditionalGeneration(config).to(dtype)
        image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 336},
                                                     crop_size={"height": 336, "width": 336},
                                                     image_grid_pinpoints=pinpoints)
        processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1)
        adapter_class = LlavaNextAdapter
    adapter = adapter_class(model, processor, name=f"{family}-7b-shaped-{layers}L", revision="random",
                            prompt_template=PROMPT_TEMPLATE)
    return adapter


def _config(arch, tokenizer, *, next_: bool, pinpoints=None):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaNextConfig

    vision = CLIPVisionConfig(hidden_size=arch.vision_hidden, intermediate_size=4 * arch.vision_hidden,
                              num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
                              image_size=arch.image_size, patch_size=arch.patch_size, projection_dim=arch.vision_hidden)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=arch.text_hidden, intermediate_size=arch.text_intermediate,
                       num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
                       num_key_value_heads=arch.text_heads, max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    if next_:
        return LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                               image_grid_pinpoints=pinpoints, vision_feature_select_strategy="default",
                               vision_feature_layer=-1)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                       image_seq_length=arch.num_image_tokens, vision_feature_select_strategy="default",
                       vision_feature_layer=-1)


def questions(n: int, family: str, folder: Path):
    """easy-VQA questions with their images upscaled (336x336; LLaVA-1.6: 672x336, i.e. a 2x1 tiling)."""
    from dataclasses import replace

    from PIL import Image

    from pidcore.data import load_questions

    size = (336, 336) if family == "llava" else (672, 336)
    items = []
    for item in load_questions("easy-vqa", ["color", "shape"], n=max(1, n // 2), seed=0)[:n]:
        path = folder / f"{item.image_id}-{size[0]}x{size[1]}.png"
        if not path.exists():
            Image.open(item.image_path).convert("RGB").resize(size).save(path)
        items.append(replace(item, image_path=str(path)))
    return items


def peak_memory_mb(device) -> float:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, device) -> float:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(adapter, items, batch_size: int, device) -> dict:
    """Seconds for: baseline only; baseline + a knocked-out run from layer 1 without and with prefix reuse."""
    from pidcore.data import answer_set
    from pidcore.extract import Knockout
    from pidcore.extract.multirun import extract_runs

    answers = answer_set("easy-vqa")
    last = adapter.num_layers - 1
    window = Knockout(["image->question"], (min(1, last), last))
    half = Knockout(["image->question"], (adapter.num_layers // 2, last))
    run = {"batch_size": batch_size}
    extract_runs(adapter, items[:batch_size], answers=answers, runs={"baseline": None}, batch_size=batch_size)  # warm
    run["baseline_s"] = timed(lambda: extract_runs(adapter, items, answers=answers, runs={"baseline": None},
                                                   batch_size=batch_size), device)
    for name, knockout, reuse in (("ko_plain_s", window, False), ("ko_reuse_s", window, True),
                                  ("ko_half_plain_s", half, False), ("ko_half_reuse_s", half, True)):
        run[name] = timed(lambda k=knockout, r=reuse: extract_runs(
            adapter, items, answers=answers, runs={"baseline": None, "ko": k}, batch_size=batch_size, reuse=r),
            device) - run["baseline_s"]
    run["questions_per_s"] = len(items) / run["baseline_s"]
    run["peak_mb"] = peak_memory_mb(device)
    return run


def projection(run: dict, layers_built: int, n_questions: int) -> dict:
    """Seconds of the seed's study (2 models x 6 tasks x 900 questions, baseline + a 9-layer sweep centred
    on each of 32 layers), with and without prefix reuse, from the measured per-question-layer cost."""
    from pidcore.study import sweep_windows

    per_question_layer = run["baseline_s"] / n_questions / layers_built
    layers = SEED_STUDY["layers"]
    windows = sweep_windows(layers, SEED_STUDY["k"])
    plain_layers = layers * (1 + len(windows))
    reuse_layers = layers + sum(layers - first for _, first, _ in windows)
    questions = SEED_STUDY["models"] * SEED_STUDY["tasks"] * SEED_STUDY["questions"]
    return {"plain_h": per_question_layer * plain_layers * questions / 3600,
            "reuse_h": per_question_layer * reuse_layers * questions / 3600,
            "layer_passes_saved": 1 - reuse_layers / plain_layers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers to build (the real model has 32)")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--family", choices=["llava", "next", "both"], default="llava",
                        help="LLaVA-1.5 (576 image tokens) and/or LLaVA-1.6-shaped inputs (anyres, 1,728 here)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    families = ["llava", "next"] if args.family == "both" else [args.family]
    print(f"device {args.device}, {dtype}, {args.layers} decoder layers of LLaVA-1.5-7B's shape, "
          f"{args.questions} questions, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for family in families:
            built = time.perf_counter()
            adapter = build(family, args.layers, dtype, args.device)
            items = questions(args.questions, family, Path(tmp))
            inputs, roles = adapter.encode(items[:1])
            tokens, image_tokens = inputs["input_ids"].shape[1], int(roles.image.sum())
            print(f"\n{family}: built in {time.perf_counter() - built:.1f} s; {tokens} tokens per question, "
                  f"{image_tokens} image tokens")
            for batch_size in args.batch_sizes:
                if str(args.device).startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                try:
                    run = measure(adapter, items, batch_size, args.device)
                except torch.OutOfMemoryError:
                    print(f"  batch {batch_size}: out of memory")
                    torch.cuda.empty_cache()
                    break
                cost = projection(run, args.layers, len(items))
                print(f"  batch {batch_size}: {run['questions_per_s']:.3f} questions/s "
                      f"({run['baseline_s'] / len(items) / args.layers * 1000:.0f} ms per question and layer), "
                      f"peak memory {run['peak_mb']:.0f} MiB")
                print(f"    knockout in layers 1-{args.layers - 1}: +{100 * run['ko_plain_s'] / run['baseline_s']:.0f}% "
                      f"plain, +{100 * run['ko_reuse_s'] / run['baseline_s']:.0f}% with prefix reuse; in layers "
                      f"{args.layers // 2}-{args.layers - 1}: +{100 * run['ko_half_plain_s'] / run['baseline_s']:.0f}% "
                      f"plain, +{100 * run['ko_half_reuse_s'] / run['baseline_s']:.0f}% reuse")
                print(f"    projected seed study (2 models x 6 tasks x 900 questions, baseline + k=9 sweep over "
                      f"32 layers) on this device: {cost['plain_h']:.1f} h plain, {cost['reuse_h']:.1f} h with "
                      f"prefix reuse ({100 * cost['layer_passes_saved']:.0f}% of decoder-layer passes saved)")
            del adapter
    return 0


if __name__ == "__main__":
    sys.exit(main())
