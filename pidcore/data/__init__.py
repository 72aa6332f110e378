"""Question sets with named tasks: easy-VQA (bundled) and GQA (a local copy).

Ids contain no "/": qids look like "easy-vqa.test.17" or "gqa.201307251", image ids like
"easy-vqa.test.3" or "gqa.n161313".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import easyvqa, gqa
from .items import DatasetInfo, TaskInfo, VQAItem, load_rgb
from .sampling import as_task_list, check_n, sample

DATASETS: dict[str, DatasetInfo] = {easyvqa.NAME: easyvqa.INFO, gqa.NAME: gqa.INFO}

__all__ = ["DATASETS", "DatasetInfo", "TaskInfo", "VQAItem", "answer_set", "find_image",
           "list_datasets", "load_questions", "load_rgb"]


def list_datasets() -> dict[str, DatasetInfo]:
    """name -> DatasetInfo (tasks with descriptions, splits)."""
    return dict(DATASETS)


def _check_dataset(dataset: str) -> DatasetInfo:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[dataset]


def load_questions(dataset: str, tasks: str | Sequence[str], *, split: str = "test",
                   n: int | None = None, seed: int = 0, root: str | Path | None = None) -> list[VQAItem]:
    """Up to n questions per task (all if n is None), a deterministic sample for the seed.

    Unknown dataset/task/split -> ValueError naming it and listing the valid ones;
    missing files -> FileNotFoundError naming the path. `root` is the GQA folder (easy-VQA ignores it).
    """
    info = _check_dataset(dataset)
    task_list = as_task_list(tasks)
    unknown = [task for task in task_list if task not in info.task_names]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(map(repr, unknown))} for {dataset}; "
                         f"valid tasks: {', '.join(info.task_names)}")
    check_n(n)
    if split not in info.splits:
        raise ValueError(f"unknown split {split!r} for {dataset}; valid splits: {', '.join(info.splits)}")
    items: list[VQAItem] = []
    for task in dict.fromkeys(task_list):
        if dataset == easyvqa.NAME:
            pool = easyvqa.task_items(split, task)
        else:
            pool = gqa.task_items(gqa.resolve_root(root), split, task)
        items.extend(sample(pool, n, seed, f"{dataset}:{split}:{task}"))
    return items


def answer_set(dataset: str, root: str | Path | None = None) -> list[str]:
    """The answer vocabulary (easy-VQA: its 13 answers; GQA: the distinct gold answers found)."""
    _check_dataset(dataset)
    if dataset == easyvqa.NAME:
        return easyvqa.answer_set()
    return gqa.answer_set(gqa.resolve_root(root))


def find_image(image_id: str, root: str | Path | None = None) -> Path:
    """The image file of an image id; ValueError for a malformed/unknown id, FileNotFoundError if absent."""
    if not isinstance(image_id, str) or "/" in image_id:
        raise ValueError(f"bad image id {image_id!r}")
    if image_id.startswith(easyvqa.NAME + "."):
        parts = image_id[len(easyvqa.NAME) + 1:].split(".")
        if len(parts) != 2:
            raise ValueError(f"bad easy-vqa image id {image_id!r}; expected easy-vqa.<split>.<index>")
        path = easyvqa.image_file(*parts)
    elif image_id.startswith(gqa.NAME + "."):
        path = gqa.image_file(gqa.resolve_root(root), image_id[len(gqa.NAME) + 1:])
    else:
        raise ValueError(f"bad image id {image_id!r}; expected a prefix from {', '.join(DATASETS)}")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    return path
