"""easy-VQA (the offline `easy-vqa` package): 64x64 images of one coloured shape, 13 answers.

Tasks (by question kind):
  shape          what shape ...?                 (answer: circle / rectangle / triangle)
  color          what colour ...?                (answer: one of 8 colours)
  yesno          every yes/no question
  yesno-color    yes/no about a colour, not negated ("is there a red shape?")
  yesno-shape    yes/no about a shape, not negated ("is there a circle?")
  yesno-negated  negated yes/no ("is there not a circle?", "is no red shape present?")
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .items import DatasetInfo, TaskInfo, VQAItem

NAME = "easy-vqa"
SPLITS = ("train", "test")
SHAPES = ("circle", "rectangle", "triangle")
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
TASKS = (
    TaskInfo("shape", "what shape is shown (circle, rectangle, triangle)"),
    TaskInfo("color", "what colour the shape has (8 colours)"),
    TaskInfo("yesno", "all yes/no questions"),
    TaskInfo("yesno-color", "yes/no about a colour, not negated"),
    TaskInfo("yesno-shape", "yes/no about a shape, not negated"),
    TaskInfo("yesno-negated", "negated yes/no questions (not / no)"),
)
INFO = DatasetInfo(NAME, "easy-VQA: 64x64 images of one coloured shape, 13 answers", SPLITS, TASKS)
_NEGATION = re.compile(r"\b(not|no)\b")
_COLOR_WORD = re.compile(r"\b(" + "|".join(COLORS) + r")\b")


def question_kinds(question: str, answer: str) -> tuple[str, ...]:
    """The easy-VQA task names a question belongs to."""
    if answer in SHAPES:
        return ("shape",)
    if answer in COLORS:
        return ("color",)
    if _NEGATION.search(question):
        return ("yesno", "yesno-negated")
    if _COLOR_WORD.search(question):
        return ("yesno", "yesno-color")
    return ("yesno", "yesno-shape")


def answer_set() -> list[str]:
    import easy_vqa

    return list(easy_vqa.get_answers())


@lru_cache(maxsize=4)
def _split_data(split: str):
    import easy_vqa

    if split == "train":
        texts, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        texts, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    return tuple(texts), tuple(answers), tuple(image_ids), dict(paths)


def all_items(split: str) -> list[VQAItem]:
    """Every question of a split, with the first task it belongs to filled in lazily per task."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for easy-vqa; valid splits: {', '.join(SPLITS)}")
    texts, answers, image_ids, paths = _split_data(split)
    return [
        VQAItem(
            qid=f"{NAME}.{split}.{index}",
            dataset=NAME,
            task=question_kinds(text, answer)[-1],
            question=text,
            answer=answer,
            image_id=f"{NAME}.{split}.{image_id}",
            image_path=str(paths[image_id]),
        )
        for index, (text, answer, image_id) in enumerate(zip(texts, answers, image_ids, strict=True))
    ]


def task_items(split: str, task: str) -> list[VQAItem]:
    """The questions of one task, with `task` set to that name."""
    from dataclasses import replace

    return [
        replace(item, task=task)
        for item in all_items(split)
        if task in question_kinds(item.question, item.answer)
    ]


def image_file(split: str, index: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown easy-vqa split {split!r} in image id; valid: {', '.join(SPLITS)}")
    try:
        key = int(index)
    except ValueError:
        raise ValueError(f"bad easy-vqa image index {index!r}") from None
    paths = _split_data(split)[3]
    if key not in paths:
        raise ValueError(f"unknown easy-vqa image {NAME}.{split}.{index}")
    return Path(paths[key])
