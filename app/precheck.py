"""The one feasibility check of a request, before anything is queued (analyses, studies; the service, the
dashboard and the CLI call it): combinations that cannot work are refused with the field they concern and a
fix in words (`Refused`, a ValueError: HTTP 422): a dataset not configured here, more questions than a task
has, PCA sizes beyond the representations or the answers, too few questions for the PCA sizes, a knockout
window outside the model or cutting an edge its family lacks. Server bounds, the model allow-list and the
model cache are the service's (app/services/validation.py), checked before this."""

from __future__ import annotations

import importlib
import json
import os
from functools import lru_cache
from pathlib import Path

from pidcore.pipeline import costs
from pidcore.pipeline.validation import rows_needed


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


KNOCKOUT_EDGES = ("image->question", "image->last", "question->last", "last->last", "question->image")


def check_window(knockout, num_layers: int | None, supported: list | None = None, family: str | None = None,
                 label: str = "knockout") -> None:
    """Refused (field `label`) when a knockout window {"edges", "layers"} is malformed, cuts an edge the model's
    family does not support, or reaches past the model's decoder layers (0..num_layers - 1)."""
    if knockout is None:
        return
    if not isinstance(knockout, dict):
        raise Refused(label, f'{label} must be null or {{"edges": [...], "layers": [first, last]}}')
    edges = knockout.get("edges")
    if not isinstance(edges, list) or not edges or any(e not in KNOCKOUT_EDGES for e in edges):
        raise Refused(label, f"{label}.edges must be a non-empty list from {', '.join(KNOCKOUT_EDGES)}")
    if supported and any(e not in supported for e in edges):
        raise Refused(label, f"{family or 'this model'} supports knockout edges {', '.join(supported)}; "
                             f"not {', '.join(e for e in edges if e not in supported)}")
    layers = knockout.get("layers")
    if (not isinstance(layers, list | tuple) or len(layers) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)):
        raise Refused(label, f"{label}.layers must be [first, last] decoder-layer indices")
    first, last = layers
    if first < 0 or last < first:
        raise Refused(label, f"{label}.layers [{first}, {last}] is not a window (0 <= first <= last)")
    if num_layers is not None and last >= num_layers:
        raise Refused(label, f"{label}.layers [{first}, {last}] is outside the model: decoder layers are "
                             f"0..{num_layers - 1}")


def _local_model(model: str) -> dict:
    """{num_layers, knockout_edges, family} from the model's local config (no download); {} when unknown."""
    return {"name": model, **_model_family(model), "num_layers": _num_decoder_layers(model)}


def study_dims(study) -> tuple[int, int, int]:
    """The PCA sizes a study's parts need at least: the pidflow recipe's; the seed recipe alone sizes its
    PCA from the data (capped at what the questions support), so it needs one component each."""
    return tuple(study.dims) if "pidflow" in study.recipes else (1, 1, 1)


def check_study(study, describe=None) -> None:
    """The feasibility check of a study (a pidcore.study.run.StudyRequest), part by part as its workers run it:
    for every model x task, the analysis check above (`check`) at the recipes' PCA sizes and the task's
    questions, and every knockout window (fixed ones, the image->question cut, the sweep's edges) against
    the model (`describe(model)` -> {num_layers, knockout_edges, family}; default: its local config)."""
    from pidcore.study.run import SEED_CUT_EDGES

    describe = describe or _local_model
    dims = list(study_dims(study))
    for model in study.models:
        for task in study.tasks:
            n = study.n_questions
            if study.question_ids and task in study.question_ids:
                n = min(n, len(study.question_ids[task]))
            check({"model": model, "dataset": study.dataset, "split": study.split, "tasks": [task],
                   "n_questions": n, "dims": dims, "target": study.target, "bootstrap": study.bootstrap})
        info = describe(model) or {}
        num_layers, supported, family = info.get("num_layers"), info.get("knockout_edges"), info.get("family")
        for index, window in enumerate(study.knockouts):
            check_window(window, num_layers, supported, family, label=f"knockouts[{index}]")
        if study.seed_cut and supported and any(edge not in supported for edge in SEED_CUT_EDGES):
            raise Refused("seed_cut", f"{family or model} supports knockout edges {', '.join(supported)}; the "
                                      f"seed's cut needs {', '.join(SEED_CUT_EDGES)}: set seed_cut false")
        if study.sweep is not None:
            check_window({"edges": list(study.sweep["edges"]), "layers": [0, 0]}, num_layers, supported, family,
                         label="sweep")


FIELD_LABELS = {"n_questions": "Questions per task", "dims": "PCA sizes", "bootstrap": "Bootstrap resamples",
                "tasks": "Task(s)", "dataset": "Dataset", "model": "Model", "knockout": "Attention knockout",
                "gaussianize": "Gaussianization", "measure": "Estimator", "target": "Target Y",
                "language_pooling": "Language pooling", "seed": "Seed", "split": "Split", "models": "Models",
                "knockouts": "Knockout windows", "sweep": "Sweep", "seed_cut": "Image->question cut",
                "recipes": "Recipes", "seed_variance": "Seed recipe's variance", "question_ids": "Question ids"}


def field_of(message: str) -> str | None:
    """The request field a refusal message is about (its first field name), or None."""
    text = message.lower()
    hits = [(text.find(name), name) for name in FIELD_LABELS if text.find(name) >= 0]
    hits += [(text.find(word), name) for word, name in (("unknown model", "model"), ("unknown dataset", "dataset"),
                                                        ("task", "tasks"), ("gqa", "dataset"))
             if text.find(word) >= 0]
    return min(hits, key=lambda hit: (hit[0], -len(hit[1])))[1] if hits else None  # "models" over "model"


def _model_family(model: str) -> dict:
    """Family, knockout edges and special layers from the model's local config (pidcore's registry);
    {} when the config cannot be read here."""
    config = _local_config(model)
    if config is None:
        return {}
    from pidcore.extract.families import describe_config

    facts = describe_config(config)
    facts.pop("num_layers", None)
    return facts


def _local_config(model: str) -> dict | None:
    """The model's config.json as a dict, from disk or the Hugging Face cache (no download); None if absent."""
    try:
        if model == "demo":
            demo = importlib.import_module("pidcore.demo")
            return json.loads((Path(demo.demo_model_path()) / "config.json").read_text())
        folder = Path(model).expanduser()
        if folder.is_dir():
            return json.loads((folder / "config.json").read_text())
        # the cache file itself: transformers' local_files_only lookups still call the hub (user-agent
        # registry), which hangs against a hub that accepts connections and never answers
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None
    except Exception:  # noqa: BLE001 - unknown here; the worker validates against the real model
        return None


def _num_decoder_layers(model: str) -> int | None:
    """Decoder-layer count from a local config (no download); None when it cannot be read."""
    config = _local_config(model)
    if config is None:
        return None
    text = config.get("text_config") or config
    value = text.get("num_hidden_layers")
    return int(value) if value is not None else None
