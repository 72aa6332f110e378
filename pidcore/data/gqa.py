"""GQA: official question JSON + images folder, or per-task CSV question lists.

Layout under the GQA root (argument `root`, else the environment variable PIDFLOW_GQA_ROOT):
  <split>*questions*.json            official questions (also looked up under questions/)
  images/<imageId>.jpg               images (.jpg or .png)
  <Task>.csv  or  csv/<Task>.csv     optional per-task question lists (earlier knockout work);
                                     when present they take precedence over the JSON filter.
                                     Zhang et al.'s file names are recognised as they are published:
                                     [datasets/]GQA_val_correct_question_with_..._<Task>.csv
                                     (the task is the name's last "_" part, as in their code).

Only the questions a model answers correctly, and how many remain per task and model:
`correct_questions` (pidcore.data.correct.count_correct on GQA).

Task filters on the JSON `types` (structural + semantic type; `detailed` as a fallback):
  ChooseAttr   structural choose  + semantic attr   (detailed: chooseAttr, ...)
  QueryAttr    structural query   + semantic attr   (detailed: queryAttr, ...)
  LogicalObj   structural logical + semantic obj    (detailed: logicOr, logicAnd)
  CompareAttr  structural compare + semantic attr   (detailed: compare..., same..., diff..., two...)
  ChooseRel    structural choose  + semantic rel    (detailed: chooseRel, ...)
  ChooseCat    structural choose  + semantic cat    (detailed: chooseCat, categoryThatChoose, ...)
"""

from __future__ import annotations

import csv
import json
import os
from functools import lru_cache
from pathlib import Path

from .items import DatasetInfo, TaskInfo, VQAItem

NAME = "gqa"
ROOT_ENV = "PIDFLOW_GQA_ROOT"
SPLITS = ("test", "testdev", "val", "train", "challenge", "submission")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# task -> (structural, semantic, detailed-type prefixes used when structural/semantic are missing)
TASK_TYPES = {
    "ChooseAttr": ("choose", "attr", ("chooseAttr",)),
    "QueryAttr": ("query", "attr", ("queryAttr",)),
    "LogicalObj": ("logical", "obj", ("logicOr", "logicAnd")),
    "CompareAttr": ("compare", "attr", ("compare", "same", "diff", "two", "allSame", "allDiff")),
    "ChooseRel": ("choose", "rel", ("chooseRel",)),
    "ChooseCat": ("choose", "cat", ("chooseCat", "categoryThatChoose", "categoryRelSChoose",
                                    "categoryRelOChoose")),
}
TASKS = (
    TaskInfo("ChooseAttr", "choose between two attributes (is it red or blue?)"),
    TaskInfo("QueryAttr", "ask for an attribute (what colour is the car?)"),
    TaskInfo("LogicalObj", "logical and/or about objects (is there a cat or a dog?)"),
    TaskInfo("CompareAttr", "compare attributes of two objects (same colour?)"),
    TaskInfo("ChooseRel", "choose a relation (left or right of ...?)"),
    TaskInfo("ChooseCat", "choose an object category (is it a cat or a dog?)"),
)
INFO = DatasetInfo(NAME, "GQA (local copy: question JSON/CSV + images)", SPLITS, TASKS)

_ID_COLUMNS = ("qid", "question_id", "questionid", "id", "qn_id")
_IMAGE_COLUMNS = ("image_id", "imageid", "img_id", "image", "img", "image_name", "imagename")
_QUESTION_COLUMNS = ("question", "questions", "q", "text", "prompt")
_ANSWER_COLUMNS = ("answer", "answers", "gold", "gold_answer", "label", "gt_answer", "target")


def resolve_root(root: str | Path | None) -> Path:
    if root is None:
        root = os.environ.get(ROOT_ENV)
        if not root:
            raise FileNotFoundError(
                f"no GQA root: pass root=... or set {ROOT_ENV} to the folder holding the GQA "
                "question JSON/CSV files and images/")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GQA root folder not found: {root}")
    return root


def task_matches(task: str, types: dict) -> bool:
    structural, semantic, detailed_prefixes = TASK_TYPES[task]
    if types.get("structural") and types.get("semantic"):
        return types["structural"] == structural and types["semantic"] == semantic
    detailed = types.get("detailed") or ""
    return any(detailed.startswith(prefix) for prefix in detailed_prefixes)


def question_json(root: Path, split: str) -> Path:
    """The official question file of a split (balanced preferred)."""
    names = [split] + (["testdev"] if split == "test" else [])
    for name in names:
        for folder in (root, root / "questions"):
            found = sorted(folder.glob(f"{name}*questions*.json"), key=lambda p: ("balanced" not in p.name, p.name))
            if found:
                return found[0]
    raise FileNotFoundError(
        f"no GQA question JSON for split {split!r}: expected {root / (split + '_balanced_questions.json')}")


def csv_task(path: str | Path) -> str:
    """The task a question-list CSV is for: its name ("ChooseAttr.csv"), or the last "_" part of it
    (Zhang et al.'s "GQA_val_correct_question_with_choose_ChooseAttr.csv")."""
    return Path(path).stem.rsplit("_", 1)[-1]


def task_csv(root: Path, task: str) -> Path | None:
    """The task's question-list CSV under root, csv/ or datasets/ (an exact name first, then Zhang et al.'s)."""
    for folder in (root, root / "csv", root / "datasets"):
        if folder.is_dir():
            paths = sorted(folder.glob("*.csv"))
            for path in [p for p in paths if p.stem.lower() == task.lower()] + paths:
                if csv_task(path).lower() == task.lower():
                    return path
    return None


@lru_cache(maxsize=4)
def _read_json(path: str, mtime: float) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"GQA question file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"GQA question file {path} must map questionId -> question record")
    return data


def image_file(root: Path, image_id: str) -> Path:
    folder = root / "images"
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{image_id}.jpg"


def _make_item(root: Path, task: str, qid: str, image_id: str, question: str, answer: str) -> VQAItem:
    qid, image_id = str(qid).strip(), str(image_id).strip()
    image_id = Path(image_id).stem if image_id.lower().endswith(IMAGE_SUFFIXES) else image_id
    if "/" in qid or "/" in image_id:
        raise ValueError(f"GQA ids must not contain '/': {qid!r}, {image_id!r}")
    return VQAItem(
        qid=f"{NAME}.{qid}", dataset=NAME, task=task, question=str(question).strip(),
        answer=str(answer).strip(), image_id=f"{NAME}.{image_id}",
        image_path=str(image_file(root, image_id)),
    )


def _column(fieldnames: list[str], candidates: tuple[str, ...], path: Path, what: str) -> str | None:
    normalised = {name.strip().lower().replace(" ", "_"): name for name in fieldnames}
    for candidate in candidates:
        if candidate in normalised:
            return normalised[candidate]
    if what == "question id":
        return None
    raise ValueError(f"GQA CSV {path} has no {what} column (tried {', '.join(candidates)}); "
                     f"columns: {', '.join(fieldnames)}")


def items_from_csv(root: Path, task: str, path: Path) -> list[VQAItem]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        id_col = _column(fields, _ID_COLUMNS, path, "question id")
        image_col = _column(fields, _IMAGE_COLUMNS, path, "image id")
        question_col = _column(fields, _QUESTION_COLUMNS, path, "question")
        answer_col = _column(fields, _ANSWER_COLUMNS, path, "answer")
        return [
            _make_item(root, task, row[id_col] if id_col else f"{path.stem}-{row_index}",
                       row[image_col], row[question_col], row[answer_col])
            for row_index, row in enumerate(reader)
        ]


def items_from_json(root: Path, task: str, split: str) -> list[VQAItem]:
    path = question_json(root, split)
    data = _read_json(str(path), path.stat().st_mtime)
    items = []
    for qid, record in data.items():
        if task_matches(task, record.get("types") or {}):
            if "answer" not in record:
                raise ValueError(f"GQA question {qid} in {path} has no answer (use a split with answers)")
            items.append(_make_item(root, task, qid, record["imageId"], record["question"], record["answer"]))
    return items


def task_items(root: Path, split: str, task: str) -> list[VQAItem]:
    csv_path = task_csv(root, task)
    return items_from_csv(root, task, csv_path) if csv_path else items_from_json(root, task, split)


def answer_set(root: Path) -> list[str]:
    """Distinct gold answers of every question JSON and CSV under the root, sorted."""
    answers: set[str] = set()
    for path in sorted(root.glob("*questions*.json")) + sorted((root / "questions").glob("*questions*.json")):
        answers.update(str(r.get("answer", "")).strip() for r in _read_json(str(path), path.stat().st_mtime).values())
    for task in TASK_TYPES:
        csv_path = task_csv(root, task)
        if csv_path:
            answers.update(item.answer for item in items_from_csv(root, task, csv_path))
    answers.discard("")
    if not answers:
        raise FileNotFoundError(f"no GQA questions found under {root}")
    return sorted(answers)


def correct_questions(model, tasks, *, split: str = "test", n: int | None = None, seed: int = 0,
                      root: str | Path | None = None, question_ids: dict | None = None, batch_size: int = 8):
    """GQA as the seed used it: (the questions `model` answers correctly, task -> CorrectCount with how
    many were asked and how many remain). See pidcore.data.correct.count_correct for the arguments."""
    from .correct import load_correct_questions

    return load_correct_questions(model, NAME, tasks, split=split, n=n, seed=seed, root=root,
                                  question_ids=question_ids, batch_size=batch_size)
