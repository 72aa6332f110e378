"""Questions a model answers correctly when asked, and how many remain per task and model (the seed kept
only those, at least ~900 per task and model on GQA).

"Answers correctly" is pidflow's reading everywhere (pidcore.extract.Features.correct): the first token
of the gold answer gets the highest probability among the dataset's answer set at the answer position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CorrectCount:
    """One (task, model): how many questions were asked, how many the model answered correctly, and those."""

    dataset: str
    task: str
    model: str
    asked: int
    correct: int
    items: tuple = field(default=(), repr=False)  # the correctly answered VQAItems, in the asked order

    @property
    def accuracy(self) -> float:
        return self.correct / self.asked if self.asked else 0.0

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "task": self.task, "model": self.model, "asked": self.asked,
                "correct": self.correct, "accuracy": self.accuracy, "qids": [item.qid for item in self.items]}


def _listed(pool: list, ids) -> list:
    """The items of `pool` whose id is listed (with or without the dataset prefix), in the pool's order."""
    wanted = {str(q) for q in ids}
    return [item for item in pool if item.qid in wanted or item.qid.split(".", 1)[-1] in wanted]


def count_correct(model, dataset: str, tasks, *, split: str = "test", n: int | None = None, seed: int = 0,
                  root: str | Path | None = None, question_ids: dict | None = None, batch_size: int = 8,
                  progress=None) -> dict[str, CorrectCount]:
    """task -> CorrectCount of `model` (a name for pidcore.extract.load_adapter, or a loaded adapter) on
    up to `n` questions per task (all with None; a seeded sample as load_questions), or on the task's listed
    question ids (`question_ids`: {task: [ids]}, e.g. Zhang et al.'s lists, read_question_ids).
    `progress(task, fraction)`."""
    from pidcore.data import answer_set, load_questions
    from pidcore.data.sampling import as_task_list, sample
    from pidcore.extract import extract, load_adapter

    adapter = load_adapter(model) if isinstance(model, str | Path) else model
    name = str(model) if isinstance(model, str | Path) else getattr(adapter, "name", type(adapter).__name__)
    answers = answer_set(dataset, root=root)
    counts = {}
    for task in dict.fromkeys(as_task_list(tasks)):
        ids = (question_ids or {}).get(task)
        if ids is None:
            items = load_questions(dataset, [task], split=split, n=n, seed=seed, root=root)
        else:
            pool = _listed(load_questions(dataset, [task], split=split, n=None, root=root), ids)
            items = sample(pool, n, seed, f"{dataset}:{split}:{task}:list")
        if not items:
            counts[task] = CorrectCount(dataset, task, name, 0, 0)
            continue
        report = None if progress is None else (lambda fraction, message, task=task: progress(task, fraction))
        correct = extract(adapter, items, answers=answers, batch_size=batch_size, progress=report).correct
        kept = tuple(item for item, ok in zip(items, correct, strict=True) if ok)
        counts[task] = CorrectCount(dataset, task, name, len(items), len(kept), kept)
    return counts


def load_correct_questions(model, dataset: str, tasks, **options) -> tuple[list, dict[str, CorrectCount]]:
    """(the correctly answered questions of every task, in order; task -> CorrectCount): count_correct's
    selection as one question list, ready for an analysis."""
    counts = count_correct(model, dataset, tasks, **options)
    return [item for count in counts.values() for item in count.items], counts


def format_counts(counts) -> str:
    """One line per (task, model): 'model · task: 912 of 1000 answered correctly (91.2%)'."""
    rows = counts.values() if isinstance(counts, dict) else counts
    return "\n".join(f"{c.model} · {c.task}: {c.correct} of {c.asked} answered correctly ({100 * c.accuracy:.1f}%)"
                     for c in rows)
