"""Deterministic sub-sampling of question lists."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def check_n(n: int | None) -> None:
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")


def sample(items: Sequence[T], n: int | None, seed: int, salt: str) -> list[T]:
    """Up to n items chosen by (seed, salt), kept in their original order; all items if n is None."""
    if n is None or n >= len(items):
        return list(items)
    rng = random.Random(f"{seed}:{salt}")
    chosen = sorted(rng.sample(range(len(items)), n))
    return [items[index] for index in chosen]


def as_task_list(tasks: str | Sequence[str]) -> list[str]:
    if isinstance(tasks, str):
        return [tasks]
    tasks = list(tasks)
    if not tasks or not all(isinstance(task, str) for task in tasks):
        raise ValueError(f"tasks must be a task name or a non-empty list of names, got {tasks!r}")
    return tasks
