"""Attention maps for the question explorer and the "try your own image and question" box.

They are computed here, in the server process, for the bundled demo model only (a few MB, one forward pass
of ~0.1 s on a CPU): a big checkpoint would need a GPU worker, which this does not do. One eager-attention
copy of the model is loaded on first use and shared, behind a lock; maps are cached per (analysis, question).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import lru_cache

ATTENTION_MODELS = ("demo",)
MAX_QUESTION_CHARS = 300
_lock = threading.Lock()


@dataclass
class _Item:
    question: str
    image: object

    def load_image(self):
        return self.image


@lru_cache(maxsize=1)
def _adapter(model: str):
    from pidcore.extract.adapters import load_adapter

    return load_adapter(model, attn_implementation="eager", device="cpu")


def _check_model(model: str) -> None:
    if model not in ATTENTION_MODELS:
        raise ValueError(f"attention maps are computed for the bundled demo model only (this analysis uses "
                         f"{model!r}); other models would need a GPU worker")


@lru_cache(maxsize=256)
def _cached(analysis_id: str, qid: str, model: str, dataset: str, image_id: str, question: str,
            knockout: tuple | None) -> dict:
    from pidcore.attention import image_attention
    from pidcore.data import answer_set, find_image
    from pidcore.data.items import load_rgb
    from pidcore.extract.knockout import Knockout

    item = _Item(question, load_rgb(find_image(image_id)))
    answers = answer_set(dataset)
    with _lock:
        adapter = _adapter(model)
        maps = {"baseline": image_attention(adapter, item, answers=answers), "knockout": None}
        if knockout:
            edges, layers = knockout
            maps["knockout"] = image_attention(adapter, item, knockout=Knockout(list(edges), list(layers)),
                                               answers=answers)
    return maps


def question_attention(document: dict, analysis_id: str, qid: str) -> dict:
    """Attention maps of one question of an analysis (baseline, and knockout when the analysis has one)."""
    request = document.get("request") or {}
    _check_model(request.get("model", "demo"))
    entry = next((q for q in document.get("questions") or [] if q.get("qid") == qid), None)
    if entry is None:
        raise KeyError(f"question {qid!r} is not part of analysis {analysis_id}")
    knockout = request.get("knockout")
    key = (tuple(knockout["edges"]), tuple(knockout["layers"])) if knockout else None
    maps = _cached(analysis_id, qid, request.get("model", "demo"), request.get("dataset", "easy-vqa"),
                   entry["image_id"], entry["question"], key)
    return {"qid": qid, "question": entry["question"], "image_url": f"/api/v1/images/{entry['image_id']}", **maps}


def check_question(question: str | None) -> str:
    """The typed question, stripped; ValueError when empty or longer than MAX_QUESTION_CHARS."""
    question = (question or "").strip()
    if not question:
        raise ValueError("type a question about the image")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is {len(question)} characters long; at most {MAX_QUESTION_CHARS}")
    return question


def load_own_image(image_bytes: bytes):
    """An uploaded image as RGB (PIL); ValueError when PIL cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(image_bytes)).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("that file is not an image PIL can read (PNG or JPEG)") from exc


def own_question(image_bytes: bytes, question: str, dataset: str = "easy-vqa") -> dict:
    """The demo model's answer to one uploaded image and typed question, with its attention maps."""
    from pidcore.attention import image_attention
    from pidcore.data import answer_set

    question = check_question(question)
    image = load_own_image(image_bytes)
    with _lock:
        return {"question": question,
                "baseline": image_attention(_adapter("demo"), _Item(question, image), answers=answer_set(dataset))}
