"""A batch's baseline and all its knockout runs together: one encoding per batch, and each knocked-out
forward starts from the baseline's hidden states at its window's first layer.

Layers before a knockout window see exactly the baseline's inputs, so their outputs are the baseline's:
`replayed_prefix` makes those decoder layers return the baseline's stored outputs instead of computing
them (their forward hooks still fire, so pooling sees the same tensors). The result is bit-equal to a
plain knocked-out forward (tested on the demo model) and a sweep of windows over the depth costs about
half the decoder-layer passes. Batches can be grouped by image-token count (LLaVA-1.6's any-resolution
images) to cut padding; results come back in the questions' order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack, contextmanager

import numpy as np
import torch

from .families import FAMILIES
from .features import Features
from .knockout import Knockout
from .loading import BatchSizer, resolve_batch_size, run_batches
from .pooling import PooledStates, pooling_hooks
from .run import build_features, check_extract_arguments

#: model types whose image-token count depends on the image (any-resolution tiling)
VARIABLE_IMAGE_TOKENS = frozenset(t for t, family in FAMILIES.items() if family.variable_image_tokens)


def batch_order(adapter, items) -> np.ndarray:
    """Order in which to batch `items`: grouped by image size (which fixes the image-token count) for
    models whose count varies, else the given order. A stable sort: ties keep the questions' order."""
    model_type = getattr(getattr(getattr(adapter, "model", None), "config", None), "model_type", None)
    if model_type not in VARIABLE_IMAGE_TOKENS:
        return np.arange(len(items))
    from PIL import Image

    def size(item) -> tuple[int, int]:
        with Image.open(item.image_path) as image:  # reads the header only
            return image.size
    sizes = [size(item) for item in items]
    return np.array(sorted(range(len(items)), key=lambda index: sizes[index]), dtype=int)


def _constant(value):
    def forward(*args, **kwargs):
        return value
    return forward


@contextmanager
def replayed_prefix(decoder_layers, outputs: list, first: int):
    """Decoder layers 0..first-1 return `outputs[i]` (the baseline's) instead of computing; their hooks
    still run. The layers' own `forward` (also one set by accelerate's device hooks) is restored on exit."""
    saved = []
    try:
        for index in range(first):
            layer = decoder_layers[index]
            saved.append((layer, layer.__dict__.get("forward")))
            layer.forward = _constant(outputs[index])
        yield
    finally:
        for layer, previous in saved:
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


@contextmanager
def _capture(decoder_layers, count: int, outputs: list):
    """Keep the outputs of decoder layers 0..count-1 (references, no copies) in `outputs`."""
    def hook(index):
        def on_output(module, args, output):
            outputs[index] = output
        return on_output

    handles = [decoder_layers[index].register_forward_hook(hook(index)) for index in range(count)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class SpilledRun:
    """One run's pooled states written to two files as each batch comes (`<folder>/vision.bin`,
    `language.bin`: (L+1, n, h) C-ordered in `dtype`), each question's rows at its own position, by
    positioned writes (nothing mapped: the page cache holds them, not the process). Read back a layer at a
    time (`vision()`, a pidcore.features.files.FileArray). A batch written again (after out of memory) writes
    the same positions again."""

    def __init__(self, folder, shape: tuple[int, int, int], dtype="float32"):
        import os
        from pathlib import Path

        self.folder, self.shape, self.dtype = Path(folder), tuple(shape), np.dtype(dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths = {source: self.folder / f"{source}.bin" for source in ("vision", "language")}
        self.files = {}
        for source, path in self.paths.items():
            self.files[source] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(self.files[source], int(np.prod(self.shape)) * self.dtype.itemsize)

    def write(self, positions: np.ndarray, vision: np.ndarray, language: np.ndarray) -> None:
        """Rows of a batch: vision/language (L+1, b, h), question j of the batch at row positions[j]."""
        import os

        layers, n, hidden = self.shape
        row = hidden * self.dtype.itemsize
        positions = np.asarray(positions)
        runs = np.split(np.arange(len(positions)), np.flatnonzero(np.diff(positions) != 1) + 1)  # contiguous spans
        for source, states in (("vision", vision), ("language", language)):
            states = np.ascontiguousarray(states, dtype=self.dtype)
            for layer in range(layers):
                for span in runs:
                    offset = (layer * n + int(positions[span[0]])) * row
                    os.pwrite(self.files[source], states[layer, span[0]:span[-1] + 1].tobytes(), offset)

    def close(self) -> None:
        import os

        for handle in self.files.values():
            os.close(handle)
        self.files = {}

    def array(self, source: str):
        from pidcore.features.files import FileArray

        return FileArray(self.paths[source], 0, self.shape, self.dtype)


def extract_runs(adapter, items, *, answers, runs: Mapping[str, Knockout | None], language_pooling: str = "mean",
                 target: str = "logprobs", batch_size: int | str | None = None, reuse: bool = True, group: bool = True,
                 progress: Callable[[float, str], None] | None = None, spill_dir=None,
                 spill_dtype: str = "float32") -> dict[str, Features]:
    """Features of every run (name -> Knockout, None = the baseline) for the same questions, in their order.

    Each batch is encoded once; with `reuse` (and a baseline among the runs) a knocked-out forward replays
    the baseline's outputs of the layers before its window. `batch_size`: questions per batch or "auto"
    (pidcore.extract.loading); None: PIDFLOW_BATCH_SIZE, else 8; a batch out of memory runs again in halves
    (all its runs). `progress(fraction, message)`.

    `spill_dir`: each run's pooled states go to files there as each run of each batch finishes (SpilledRun,
    in `spill_dtype`: float16 halves them) and the Features read them a layer at a time, so host memory holds
    one run of one batch, whatever the number of runs and questions (the per-question answers aside);
    without it every run's states stay in memory (float32) until the end. The caller removes the folder.
    """
    batch_size = resolve_batch_size(batch_size)
    items = check_extract_arguments(items, target, batch_size, "extract_runs")
    if not runs:
        raise ValueError("extract_runs needs at least one run")
    for knockout in runs.values():
        if knockout is not None:
            adapter.check_knockout(knockout)
    names = sorted(runs, key=lambda name: runs[name] is not None)  # the baseline first
    baseline = next((name for name in names if runs[name] is None), None)
    reuse = reuse and baseline is not None
    prefix = max((runs[name].layers[0] for name in names if runs[name] is not None), default=0) if reuse else 0
    order = batch_order(adapter, items) if group else np.arange(len(items))
    ordered = [items[index] for index in order]
    answers = list(answers)
    answer_ids = torch.tensor(adapter.answer_token_ids(answers), device=adapter.device)
    pooled = PooledStates(adapter.num_layers, language_pooling)
    collected = {name: ([], [], [], []) for name in names}  # vision, language, targets, log_answer
    layers = adapter.decoder_layers
    report = progress or (lambda fraction, message: None)
    sizer = BatchSizer.for_adapter(adapter, batch_size)
    spilled: dict[str, SpilledRun] = {}
    with ExitStack() as stack, torch.inference_mode():
        if spill_dir is not None:
            from pathlib import Path

            stack.callback(lambda: [run.close() for run in spilled.values()])
        stack.enter_context(pooling_hooks(layers, adapter.final_norm, pooled))
        stack.enter_context(adapter.vision_source_hooks(pooled))

        def run_batch(chunk, start):
            inputs, roles = adapter.encode(chunk)
            outputs: list = [None] * prefix
            batch = {}
            for done, name in enumerate(names, start=1):
                knockout = runs[name]
                with ExitStack() as run_stack:
                    if name == baseline and prefix:
                        run_stack.enter_context(_capture(layers, prefix, outputs))
                    if knockout is not None:
                        if reuse:
                            run_stack.enter_context(replayed_prefix(layers, outputs, knockout.layers[0]))
                        run_stack.enter_context(adapter.knockout_applied(knockout))(roles)
                    pooled.start_batch(roles)
                    output = adapter.model(**inputs, use_cache=False, logits_to_keep=1)
                batch_vision, batch_language = pooled.stacked()
                scores = torch.log_softmax(output.logits[:, -1].float()[:, answer_ids], dim=-1)
                vision_rows, language_rows = batch_vision.cpu().numpy(), batch_language.cpu().numpy()
                if spill_dir is not None:  # to disk at once: at their questions' positions
                    if name not in spilled:
                        spilled[name] = SpilledRun(Path(spill_dir) / f"run{names.index(name)}",
                                                   (vision_rows.shape[0], len(items), vision_rows.shape[2]),
                                                   spill_dtype)
                    spilled[name].write(order[start:start + len(chunk)], vision_rows, language_rows)
                    vision_rows, language_rows = vision_rows[:, :, :0], language_rows[:, :, :0]
                batch[name] = (vision_rows, language_rows,
                               scores.cpu().numpy() if target == "logprobs" else pooled.answer_state.cpu().numpy(),
                               scores.cpu().numpy())
                report((start + len(chunk) * done / len(names)) / len(items),
                       f"{len(names)} runs: {start + len(chunk)}/{len(items)} questions")
            for name, values in batch.items():  # only once every run of the batch ran (out of memory: nothing)
                for stored, value in zip(collected[name], values, strict=True):
                    stored.append(value)

        run_batches(ordered, sizer, run_batch)
    inverse = np.argsort(order)
    out = {name: build_features(adapter, ordered, answers, *collected[name], knockout=runs[name], target=target,
                                language_pooling=language_pooling).subset(inverse)
           for name in runs}
    for name, run in spilled.items():  # already in the questions' order
        out[name].vision, out[name].language = run.array("vision"), run.array("language")
    return out
