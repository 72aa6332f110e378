"""Features: per-layer pooled vision and language states, the target and per-question answers."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

_ARRAYS = ("vision", "language", "target", "p_correct", "correct", "predicted", "qids", "tasks", "answers",
           "answer_set", "questions", "image_ids")
_PER_QUESTION = ("target", "qids", "tasks", "answers", "predicted", "p_correct", "correct", "questions", "image_ids")


@dataclass
class Features:
    """vision, language: (L+1, n, h) float32; target: (n, k); per question predicted/p_correct/correct."""

    vision: np.ndarray
    language: np.ndarray
    target: np.ndarray
    qids: np.ndarray
    tasks: np.ndarray
    answers: np.ndarray  # gold
    predicted: np.ndarray
    p_correct: np.ndarray  # probability of the gold answer within the answer set
    correct: np.ndarray  # bool
    answer_set: np.ndarray
    questions: np.ndarray  # question texts
    image_ids: np.ndarray
    meta: dict = field(default_factory=dict)  # model description, knockout, target kind

    @property
    def n(self) -> int:
        return self.vision.shape[1]

    @property
    def num_layers(self) -> int:
        """Pooled layers (decoder layers + 1)."""
        return self.vision.shape[0]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if self.n else float("nan")

    def subset(self, index) -> Features:
        index = np.asarray(index)
        per_question = {name: getattr(self, name)[index] for name in _PER_QUESTION}
        return Features(vision=self.vision[:, index], language=self.language[:, index],
                        answer_set=self.answer_set, meta=dict(self.meta), **per_question)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        np.savez(buffer, meta=np.array(json.dumps(self.meta)), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                values = {name: archive[name] for name in _ARRAYS}
                meta = json.loads(str(archive["meta"]))
        except (ValueError, KeyError, OSError) as error:
            raise ValueError(f"not a saved Features archive: {error}") from error
        return cls(meta=meta, **values)
