"""easy-VQA as pre-tokenised tensors for fast training and evaluation of the demo model."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from pidcore.data import easyvqa

from .build import IMAGE_TOKEN


@dataclass
class EncodedSplit:
    """Left-padded prompt ids, their masks, per-question image index, answer token and kind group."""

    input_ids: torch.Tensor      # (questions, length)
    attention_mask: torch.Tensor  # (questions, length)
    image_index: torch.Tensor    # (questions,) row of `pixels`
    answer_ids: torch.Tensor     # (questions,)
    group: torch.Tensor          # (questions,) index into GROUPS
    pixels: torch.Tensor         # (images, 3, H, W), processor-normalised
    image_shape: torch.Tensor    # (images,) index into SHAPES, -100 where no question tells it
    image_color: torch.Tensor    # (images,) index into COLORS, -100 where no question tells it


GROUPS = ("shape", "color", "yesno-color", "yesno-shape", "yesno-negated")


def prompt_ids(tokenizer, question: str, num_image_tokens: int) -> list[int]:
    """Token ids the LlavaProcessor produces for "<image>\\n{question}" (image token expanded)."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    words = tokenizer(question, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *([image_id] * num_image_tokens), *words]


def encode_split(processor, split: str, num_image_tokens: int) -> EncodedSplit:
    items = easyvqa.all_items(split)
    tokenizer = processor.tokenizer
    image_keys = sorted({item.image_id for item in items}, key=lambda key: int(key.rsplit(".", 1)[1]))
    image_row = {key: row for row, key in enumerate(image_keys)}
    paths = {item.image_id: item.image_path for item in items}
    from pidcore.data import load_rgb

    images = [load_rgb(paths[key]) for key in image_keys]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    sequences = [prompt_ids(tokenizer, item.question, num_image_tokens) for item in items]
    length = max(map(len, sequences))
    input_ids = torch.full((len(items), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, length - len(sequence):] = torch.tensor(sequence)
        attention_mask[row, length - len(sequence):] = 1
    answers = tokenizer.convert_tokens_to_ids([item.answer for item in items])
    groups = [GROUPS.index(easyvqa.question_kinds(item.question, item.answer)[-1]) for item in items]
    image_shape, image_color = image_labels(items, image_row)
    return EncodedSplit(input_ids, attention_mask, torch.tensor([image_row[i.image_id] for i in items]),
                        torch.tensor(answers), torch.tensor(groups), pixels, image_shape, image_color)


def image_labels(items, image_row: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape and colour of each image, read off the questions that state them (answers or a "yes")."""
    shape = torch.full((len(image_row),), -100, dtype=torch.long)
    color = torch.full((len(image_row),), -100, dtype=torch.long)
    for item in items:
        row = image_row[item.image_id]
        kind = easyvqa.question_kinds(item.question, item.answer)[-1]
        words = re.findall(r"\w+", item.question)
        if kind == "shape":
            shape[row] = easyvqa.SHAPES.index(item.answer)
        elif kind == "color":
            color[row] = easyvqa.COLORS.index(item.answer)
        elif item.answer == "yes" and kind in ("yesno-shape", "yesno-color"):
            for word in words:
                if word in easyvqa.SHAPES:
                    shape[row] = easyvqa.SHAPES.index(word)
                if word in easyvqa.COLORS:
                    color[row] = easyvqa.COLORS.index(word)
    return shape, color


def batch(data: EncodedSplit, rows: torch.Tensor) -> dict:
    """Model inputs for the given question rows (padding trimmed to the longest prompt)."""
    mask = data.attention_mask[rows]
    start = int((mask.sum(0) > 0).nonzero()[0])
    return {"input_ids": data.input_ids[rows, start:], "attention_mask": mask[:, start:],
            "pixel_values": data.pixels[data.image_index[rows]]}


@torch.no_grad()
def accuracy(model, data: EncodedSplit, rows: torch.Tensor | None = None, batch_size: int = 256) -> float:
    """Fraction of questions whose full-vocabulary argmax at the last position is the gold answer."""
    model.eval()
    rows = torch.arange(len(data.answer_ids)) if rows is None else rows
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        logits = model(**batch(data, chunk), logits_to_keep=1).logits[:, -1]
        correct += int((logits.argmax(-1) == data.answer_ids[chunk]).sum())
    return correct / max(len(rows), 1)


def accuracy_by_group(model, data: EncodedSplit, rows: torch.Tensor | None = None) -> dict[str, float]:
    """Accuracy per question kind (GROUPS)."""
    rows = torch.arange(len(data.answer_ids)) if rows is None else rows
    return {name: round(accuracy(model, data, rows[data.group[rows] == index]), 3)
            for index, name in enumerate(GROUPS) if bool((data.group[rows] == index).any())}
