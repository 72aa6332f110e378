"""Train the demo model on easy-VQA's train split: `python -m pidcore.demo.train [--out DIR]`.

Reproducible from --seed (same machine, same thread count). Two stages: (1) the vision side alone
learns the image's shape and colour words (auxiliary loss, mirrored and shifted images); (2) the full
model learns the answers: cross-entropy (label smoothing) on the full-vocabulary logits at the last
position, batches balanced over the five question kinds, plus training-only probes that make the
answer position hold the image's and the question's attributes mid-depth. AdamW with linear warm-up and
cosine decay. Prints progress and the test accuracy, then saves the checkpoint (model.safetensors,
processor, pidflow.json with the recipe and per-kind test accuracy) to --out.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import WEIGHTS_DIR
from .build import DemoArchitecture, build_llava, count_parameters, save_demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = DemoArchitecture()
    parser = argparse.ArgumentParser(prog="python -m pidcore.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="checkpoint folder (default: shipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--aux-weight", type=float, default=1.0,
                        help="weight of the auxiliary shape/colour loss on the pooled image tokens (0: off)")
    parser.add_argument("--probe-layers", type=str, default="2,3,4",
                        help="decoder layers (comma-separated) whose answer-position state must predict the "
                             "image's shape and colour through training-only linear probes (empty: none)")
    parser.add_argument("--probe-weight", type=float, default=1.0)
    parser.add_argument("--probe-image-only", action="store_true",
                        help="probe only the image's shape and colour, not the question's words")
    parser.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True,
                        help="mirror half the training images left-right")
    parser.add_argument("--shift", type=int, default=6,
                        help="roll each training batch's images by up to this many pixels (both axes, wrapping)")
    parser.add_argument("--vision-epochs", type=int, default=36,
                        help="epochs over the training images that train the vision side alone (tower, projector, "
                             "word embeddings) on the auxiliary shape/colour loss before the full model")
    parser.add_argument("--vision-batch-size", type=int, default=128)
    parser.add_argument("--vision-lr", type=float, default=2e-3)
    parser.add_argument("--balance-answers", action="store_true",
                        help="balance yes/no answers within each question kind too (did not help so far)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=250, help="steps between quick test checks")
    parser.add_argument("--eval-questions", type=int, default=500, help="test questions per quick check")
    parser.add_argument("--train-questions", type=int, default=None, help="use only the first N (tests)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print accuracy per question kind")
    for field in ("patch_size", "vision_hidden", "vision_layers", "text_hidden", "text_layers",
                  "text_intermediate"):
        parser.add_argument("--" + field.replace("_", "-"), type=int, default=getattr(defaults, field))
    args = parser.parse_args(argv)
    if args.vision_epochs < 0:
        parser.error("--vision-epochs must be >= 0")
    for name in ("steps", "batch_size", "threads", "eval_every", "eval_questions", "vision_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.lr < 1:
        parser.error("--lr must be in (0, 1)")
    try:
        args.probe_layers = tuple(int(layer) for layer in args.probe_layers.split(",") if layer.strip())
    except ValueError:
        parser.error("--probe-layers must be comma-separated integers")
    if any(not 1 <= layer <= args.text_layers for layer in args.probe_layers):
        parser.error(f"--probe-layers must lie in 1..{args.text_layers}")
    if not 0 <= args.shift < 32:
        parser.error("--shift must be in 0..31 pixels")
    if 64 % args.patch_size:
        parser.error("--patch-size must divide the 64-pixel image side")
    return args


def lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def balanced_rows(groups, batch_size: int, generator):
    """Rows drawn with every (non-empty) group equally likely, uniformly within a group."""
    import torch

    kinds = int(groups.max()) + 1
    members = [torch.nonzero(groups == kind).flatten() for kind in range(kinds)]
    members = [m for m in members if len(m)]
    kind = torch.randint(len(members), (batch_size,), generator=generator)
    rows = torch.empty(batch_size, dtype=torch.long)
    for index, pool in enumerate(members):
        picked = kind == index
        rows[picked] = pool[torch.randint(len(pool), (int(picked.sum()),), generator=generator)]
    return rows


def mirror_half(pixels, generator):
    """Each image mirrored left-right with probability 1/2 (shape and colour labels are unchanged)."""
    import torch

    mirrored = torch.rand(len(pixels), generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], pixels.flip(-1), pixels)


def augment(pixels, args, generator):
    """Training-image augmentation: left-right mirroring (--hflip) and a random roll (--shift)."""
    import torch

    if args.hflip:
        pixels = mirror_half(pixels, generator)
    if args.shift:
        dy, dx = torch.randint(-args.shift, args.shift + 1, (2,), generator=generator).tolist()
        pixels = torch.roll(pixels, (dy, dx), (-2, -1))
    return pixels


def pretrain_vision(model, aux, data, args, generator) -> None:
    """Stage 1: the vision tower, projector and word embeddings alone learn the auxiliary shape/colour
    loss on the training images (no decoder pass: ~4x cheaper per image than a full step)."""
    import torch

    params = [*model.model.vision_tower.parameters(), *model.model.multi_modal_projector.parameters(),
              model.get_input_embeddings().weight]
    optimizer = torch.optim.AdamW(params, lr=args.vision_lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
    per_epoch = len(data.pixels) // args.vision_batch_size
    steps = per_epoch * args.vision_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, min(50, steps)))
    model.train()
    started = time.perf_counter()
    for epoch in range(args.vision_epochs):
        order = torch.randperm(len(data.pixels), generator=generator)
        for start in range(0, per_epoch * args.vision_batch_size, args.vision_batch_size):
            images = order[start:start + args.vision_batch_size]
            model.model.get_image_features(pixel_values=augment(data.pixels[images], args, generator))
            loss = aux.loss(data.image_shape[images], data.image_color[images])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.vision_epochs:
            print(f"vision epoch {epoch + 1}/{args.vision_epochs}  aux loss {loss.item():.4f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def train(args: argparse.Namespace) -> dict:
    import torch

    from .auxiliary import AnswerPositionProbes, ImageWordLoss, question_labels
    from .tensors import accuracy, accuracy_by_group, encode_split

    torch.set_num_threads(args.threads)
    arch = replace(DemoArchitecture(), **{f: getattr(args, f) for f in (
        "patch_size", "vision_hidden", "vision_layers", "text_hidden", "text_layers", "text_intermediate")})
    model, processor = build_llava(arch, seed=args.seed)
    print(f"model: {count_parameters(model):,} parameters", flush=True)
    started = time.perf_counter()
    train_data = encode_split(processor, "train", arch.num_image_tokens)
    test_data = encode_split(processor, "test", arch.num_image_tokens)
    if args.train_questions:
        keep = torch.arange(min(args.train_questions, len(train_data.answer_ids)))
        train_data.input_ids, train_data.attention_mask = train_data.input_ids[keep], train_data.attention_mask[keep]
        train_data.image_index, train_data.answer_ids = train_data.image_index[keep], train_data.answer_ids[keep]
        train_data.group = train_data.group[keep]
    print(f"encoded data in {time.perf_counter() - started:.1f} s", flush=True)
    generator = torch.Generator().manual_seed(args.seed)
    check_rows = torch.randperm(len(test_data.answer_ids), generator=generator)[:args.eval_questions]
    aux = ImageWordLoss(model, processor.tokenizer) if args.aux_weight > 0 else None
    train_started = time.perf_counter()  # wall time of both stages
    if args.vision_epochs:
        if aux is None:
            raise ValueError("--vision-epochs needs the auxiliary loss (--aux-weight > 0)")
        pretrain_vision(model, aux, train_data, args, generator)
    probes = None
    if args.probe_layers:
        targets = ("shape", "color") if args.probe_image_only else tuple(AnswerPositionProbes.TARGETS)
        probes = AnswerPositionProbes(arch.text_hidden, args.probe_layers, targets)
        asked = question_labels(train_data.input_ids, processor.tokenizer)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if probes is not None:
        groups.append({"params": list(probes.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.steps, args.warmup))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    from .tensors import batch

    strata = train_data.group  # question kinds; with --balance-answers also split by "yes" / other
    if args.balance_answers:
        yes_id = processor.tokenizer.convert_tokens_to_ids("yes")
        strata = train_data.group * 2 + (train_data.answer_ids == yes_id).long()
    losses = []
    for step in range(args.steps):
        model.train()
        rows = balanced_rows(strata, args.batch_size, generator)
        inputs = batch(train_data, rows)
        inputs["pixel_values"] = augment(inputs["pixel_values"], args, generator)
        output = model(**inputs, logits_to_keep=1, output_hidden_states=probes is not None)
        loss = loss_fn(output.logits[:, -1], train_data.answer_ids[rows])
        images = train_data.image_index[rows]
        shapes, colors = train_data.image_shape[images], train_data.image_color[images]
        if aux is not None:
            loss = loss + args.aux_weight * aux.loss(shapes, colors)
        if probes is not None:
            labels = {"shape": shapes, "color": colors, **{f"question_{name}": asked[name][rows]
                                                           for name in ("shape", "color")},
                      "negated": asked["negated"][rows]}
            loss = loss + args.probe_weight * probes.loss(output.hidden_states, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            quick = accuracy(model, test_data, check_rows)
            print(f"step {step + 1}/{args.steps}  loss {sum(losses[-50:]) / len(losses[-50:]):.4f}  "
                  f"test-subset acc {quick:.4f}  {time.perf_counter() - train_started:.0f} s", flush=True)
            if args.verbose:
                print("  test by kind:", accuracy_by_group(model, test_data, check_rows), flush=True)
                print("  train by kind:", accuracy_by_group(model, train_data, check_rows), flush=True)
            if not args.no_save and step + 1 < args.steps:  # a usable checkpoint while training goes on
                save_demo(model, processor, args.out, arch, {"training": {
                    "seed": args.seed, "steps_done": step + 1, "steps": args.steps, "test_subset_accuracy": quick}})
    train_seconds = time.perf_counter() - train_started
    if aux is not None:
        aux.remove()
    test_accuracy = accuracy(model, test_data)
    by_kind = accuracy_by_group(model, test_data)
    recipe = {name: getattr(args, name) for name in (
        "batch_size", "lr", "warmup", "weight_decay", "label_smoothing", "aux_weight", "probe_layers",
        "probe_weight", "probe_image_only", "hflip", "shift", "vision_epochs", "vision_batch_size", "vision_lr",
        "balance_answers")}
    summary = {"seed": args.seed, "steps": args.steps, **recipe, "lr": args.lr,
               "parameters": count_parameters(model), "train_seconds": round(train_seconds, 1),
               "wall_seconds": round(time.perf_counter() - started, 1), "threads": args.threads,
               "load_average_1min_at_end": round(os.getloadavg()[0], 2),
               "test_accuracy": round(test_accuracy, 4), "test_questions": len(test_data.answer_ids),
               "test_accuracy_by_kind": by_kind, "final_loss": losses[-1]}
    print(f"test accuracy {test_accuracy:.4f} on {len(test_data.answer_ids)} questions; by kind {by_kind}; "
          f"training {train_seconds:.0f} s", flush=True)
    if not args.no_save:
        save_demo(model, processor, args.out, arch, {"training": summary})
        print(f"saved to {args.out}", flush=True)
    summary["model"] = model
    return summary


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
