"""Up-front checks of an analysis request, before anything is queued: combinations that cannot work are
refused with the field they concern and a fix in words (`Refused`, a ValueError: HTTP 422), and every
request gets its expected cost (pidcore.costs)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pidcore import costs
from pidcore.validation import rows_needed


class Refused(ValueError):
    """A request that cannot work; `field` names the request field to change (None: several)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


GQA_ENV = "PIDFLOW_GQA_ROOT"


def dataset_available(name: str) -> str | None:
    """None when the dataset can be read here, else why not (with the fix)."""
    if name == "gqa":
        root = os.environ.get(GQA_ENV)
        if not root:
            return (f"GQA is not configured on this server: set {GQA_ENV} to the folder with the GQA question "
                    f"files and images/ (for the server and the workers), or use easy-vqa, which needs no download")
        if not Path(root).is_dir():
            return f"the GQA folder {root} ({GQA_ENV}) does not exist on this server"
    return None


@lru_cache(maxsize=64)
def available_questions(dataset: str, task: str, split: str) -> int | None:
    """How many questions of `task` the split holds (None when it cannot be counted here)."""
    try:
        from pidcore.data import load_questions

        return len(load_questions(dataset, [task], split=split, n=None))
    except Exception:  # noqa: BLE001 - unknown here; the worker reports its own error
        return None


@lru_cache(maxsize=16)
def model_sizes(model: str) -> dict:
    """{"hidden": text hidden size, "answers": None} from a local config; {} when unknown (no download)."""
    try:
        if model == "demo":
            from pidcore.demo import demo_model_path

            config = json.loads((Path(demo_model_path()) / "config.json").read_text())
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model, local_files_only=True).to_dict()
    except Exception:  # noqa: BLE001
        return {}
    text = config.get("text_config") or config
    return {"hidden": text.get("hidden_size")}


@lru_cache(maxsize=16)
def answer_count(dataset: str) -> int | None:
    try:
        from pidcore.data import answer_set

        return len(answer_set(dataset))
    except Exception:  # noqa: BLE001
        return None


def check(request: dict) -> None:
    """Refused (field + fix) when the request cannot give a result: a dataset not configured here, more
    questions than a task has, PCA sizes beyond the representations or the answers, or too few questions
    for the PCA sizes (each of the two cross-fitting folds needs more questions than latent dimensions)."""
    dataset = request.get("dataset", "easy-vqa")
    reason = dataset_available(dataset)
    if reason:
        raise Refused("dataset", reason)
    split = request.get("split", "test")
    tasks = list(request.get("tasks") or ["color"])
    n = int(request.get("n_questions") or 0)
    usable = []
    for task in tasks:
        count = available_questions(dataset, task, split)
        if count is not None and n > count:
            raise Refused("n_questions", f"{dataset} has {count:,} {split} questions of task {task!r}: ask for at "
                                         f"most {count} questions per task, or pick another split")
        usable.append(min(n, count) if count is not None else n)
    dims = list(request.get("dims") or (8, 8, 4))
    sizes = model_sizes(request.get("model", "demo"))
    hidden = sizes.get("hidden")
    if hidden and max(dims[0], dims[1]) > hidden:
        raise Refused("dims", f"the model's representations have {hidden} dimensions: PCA sizes for vision and "
                              f"language can be at most {hidden} (asked {dims[0]}, {dims[1]})")
    answers = answer_count(dataset) if request.get("target", "logprobs") == "logprobs" else hidden
    if answers and dims[2] > answers:
        what = f"{answers} answers" if request.get("target", "logprobs") == "logprobs" else f"{answers} dimensions"
        raise Refused("dims", f"the target has {what}: its PCA size can be at most {answers} (asked {dims[2]})")
    total = sum(usable)
    bootstrap = int(request.get("bootstrap") or 0)
    needed = rows_needed(sum(dims), bootstrap) * costs.FOLDS
    if total < needed:
        extra = " and bootstrap resamples" if bootstrap else ""
        most = sum(available_questions(dataset, t, split) or n for t in tasks)
        raise Refused("n_questions" if most >= needed else "dims",
                      f"PCA sizes {dims[0]} + {dims[1]} + {dims[2]} = {sum(dims)} latent dimensions{extra} "
                              f"need at least {needed} questions in all ({costs.FOLDS} folds of "
                              f"{needed // costs.FOLDS}); this request has {total}: lower the PCA sizes or ask for "
                              f"more questions")


FIELD_LABELS = {"n_questions": "Questions per task", "dims": "PCA sizes", "bootstrap": "Bootstrap resamples",
                "tasks": "Task(s)", "dataset": "Dataset", "model": "Model", "knockout": "Attention knockout",
                "gaussianize": "Gaussianization", "measure": "Estimator", "target": "Target Y",
                "language_pooling": "Language pooling", "seed": "Seed", "split": "Split"}


def field_of(message: str) -> str | None:
    """The request field a refusal message is about (its first field name), or None."""
    text = message.lower()
    hits = [(text.find(name), name) for name in FIELD_LABELS if text.find(name) >= 0]
    hits += [(text.find(word), name) for word, name in (("unknown model", "model"), ("unknown dataset", "dataset"),
                                                        ("task", "tasks"), ("gqa", "dataset"))
             if text.find(word) >= 0]
    return min(hits)[1] if hits else None
