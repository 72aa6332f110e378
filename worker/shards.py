"""One run's questions split into shards that several GPU workers extract (PIDFLOW_EXTRACT_SHARD questions
each, a multiple of the extraction batch), merged in question order — bit-equal to an unsharded run,
because every shard starts at a batch boundary, so each batch holds the same questions as unsharded.

The `extract` task queues one `pidflow.extract_shard` per shard and returns; each shard stores its
features (baseline and knockout) under "<run>:shard:<i>" in the job's features hash (HSETNX); the shard
that completes the set merges them into "baseline"/"knockout" and plans the analysis. A killed worker
loses only its shard (acknowledged late, redelivered and extracted again); the others stay stored.
Used when the request has no `correct_only` (which extracts the knockout run on the kept questions only)
and its questions exceed one shard.
"""

from __future__ import annotations

import math
import os

import numpy as np

EXTRACT_SHARD = "pidflow.extract_shard"
BATCH = 8  # pidcore.extract.run.extract's default batch size (PIDFLOW_BATCH_SIZE unset or auto)
_PER_QUESTION = ("target", "qids", "tasks", "answers", "predicted", "p_correct", "correct", "questions", "image_ids")


def batch_size(env: dict | None = None) -> int:
    """The extraction batch shards start at multiples of: PIDFLOW_BATCH_SIZE when it is a number, else 8.
    With "auto" every shard sizes its own batches (from its first question), so sharded features equal the
    unsharded ones only to float rounding: a fixed batch size keeps them bit-equal."""
    from pidcore.extract.loading import parse_batch_size

    raw = (os.environ if env is None else env).get("PIDFLOW_BATCH_SIZE") or BATCH
    size = parse_batch_size(raw)
    return BATCH if size == "auto" else size


def shard_size(env: dict | None = None) -> int:
    """PIDFLOW_EXTRACT_SHARD rounded up to a multiple of the batch size (batch_size); 0 = no sharding."""
    raw = (os.environ if env is None else env).get("PIDFLOW_EXTRACT_SHARD") or "0"
    try:
        size = int(raw)
    except ValueError:
        raise ValueError(f"PIDFLOW_EXTRACT_SHARD must be an integer, got {raw!r}") from None
    if size < 0:
        raise ValueError(f"PIDFLOW_EXTRACT_SHARD must be >= 0, got {size}")
    batch = batch_size(env)
    return batch * math.ceil(size / batch)


def question_items(request):
    from pidcore.data import load_questions

    return load_questions(request.dataset, list(request.tasks), split=request.split, n=request.n_questions,
                          seed=request.seed)


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard of n questions."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def shardable(request, size: int) -> bool:
    return size > 0 and not request.correct_only and not request.model.startswith("features:")


def extract_shard(request, start: int, stop: int) -> dict:
    """{"baseline": Features, "knockout": Features | None} of questions [start, stop): the same plain
    extractions as pidcore.pipeline.analysis.extract_features, on a slice that starts at a batch boundary."""
    from pidcore.data import answer_set
    from pidcore.extract import Knockout, extract
    from pidcore.pipeline.analysis import _adapter

    items = question_items(request)[start:stop]
    adapter = _adapter(request.model)
    options = {"answers": answer_set(request.dataset), "language_pooling": request.language_pooling,
               "target": request.target}
    baseline = extract(adapter, items, **options)
    knocked = None
    if request.knockout:
        knockout = Knockout(**request.knockout)
        adapter.check_knockout(knockout)
        knocked = extract(adapter, items, knockout=knockout, **options)
    return {"baseline": baseline, "knockout": knocked}


def _layer_concat():
    from pidcore.features.files import LazyArray

    class LayerConcat(LazyArray):
        """Shards' (layers, n_i, h) states seen as one (layers, sum n_i, h) array, a layer read (from every
        shard) only when it is indexed: a merge holds one layer, not the run."""

        def __init__(self, arrays: list):
            self.arrays = arrays
            self.shape = (arrays[0].shape[0], sum(a.shape[1] for a in arrays), arrays[0].shape[2])
            self.dtype = np.result_type(*(np.dtype(getattr(a, "dtype", np.float32)) for a in arrays))

        def _row(self, index: int) -> np.ndarray:
            return np.concatenate([np.asarray(a[index]) for a in self.arrays]).astype(self.dtype, copy=False)
    return LayerConcat


def merge(parts: list):
    """Features of consecutive shards concatenated in question order; their layers are read one at a time
    when used (writing the merged run with feature_store.save holds one layer of it)."""
    from pidcore.extract.features import Features

    first = parts[0]
    concat = _layer_concat()
    per_question = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _PER_QUESTION}
    return Features(vision=concat([p.vision for p in parts]), language=concat([p.language for p in parts]),
                    answer_set=first.answer_set, meta=dict(first.meta), **per_question)
