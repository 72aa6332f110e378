"""Evaluate a checkpoint the way a user loads it: `python -m pidcore.demo.evaluate [--n N] [--model DIR]`.

Loads with AutoProcessor + LlavaForConditionalGeneration, fills pidflow.json's prompt template and reads
the answer as the full-vocabulary argmax at the last position.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(model_dir: str | Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    template = json.loads((Path(model_dir) / "pidflow.json").read_text())["prompt_template"]
    return model, processor, template


def predict(model, processor, template: str, items, batch_size: int = 100) -> list[str]:
    """Predicted answer word for each VQAItem."""
    import torch

    answers: list[str] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            inputs = processor(images=[item.load_image() for item in chunk],
                               text=[template.format(question=item.question) for item in chunk],
                               return_tensors="pt", padding=True)
            best = model(**inputs, logits_to_keep=1).logits[:, -1].argmax(-1)
            answers.extend(processor.tokenizer.convert_ids_to_tokens(best.tolist()))
    return answers


def main(argv: list[str] | None = None) -> int:
    from pidcore.data import load_questions
    from pidcore.data.easyvqa import TASKS

    from . import demo_model_path

    parser = argparse.ArgumentParser(prog="python -m pidcore.demo.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the demo model)")
    parser.add_argument("--n", type=int, default=None, help="questions per kind (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n is not None and args.n < 1:
        parser.error("--n must be >= 1")
    model, processor, template = load(args.model or demo_model_path())
    total = correct = 0
    for task in [t.name for t in TASKS if t.name != "yesno"]:
        items = load_questions("easy-vqa", task, n=args.n, seed=args.seed)
        hits = sum(p == i.answer for p, i in zip(predict(model, processor, template, items), items, strict=True))
        print(f"{task:14s} {hits / len(items):.4f}  ({len(items)} questions)")
        total, correct = total + len(items), correct + hits
    print(f"{'all':14s} {correct / total:.4f}  ({total} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
