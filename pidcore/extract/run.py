"""extract(): one forward pass per batch yields every layer's pooled states, the target and the answers."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch

from .features import Features
from .knockout import Knockout
from .loading import BatchSizer, parse_batch_size, resolve_batch_size, run_batches
from .pooling import PooledStates, pooling_hooks


def _progress_callback(progress, total: int, label: str):
    if progress is None or progress is False:
        return None, lambda done: None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=label, unit="q")
        state = {"done": 0}

        def update(done):
            bar.update(done - state["done"])
            state["done"] = done
        return bar, update
    return None, lambda done: progress(done / max(total, 1), f"{label}: {done}/{total} questions")


def check_extract_arguments(items, target: str, batch_size, caller: str) -> list:
    """``items`` as a list, or ValueError for no questions, an unknown target or a batch size that is
    neither >= 1 nor "auto"."""
    items = list(items)
    if not items:
        raise ValueError(f"{caller} needs at least one question")
    if target not in ("logprobs", "hidden"):
        raise ValueError(f"target must be 'logprobs' or 'hidden', got {target!r}")
    parse_batch_size(batch_size)
    return items


def extract(adapter, items, *, answers, knockout: Knockout | None = None, language_pooling: str = "mean",
            target: str = "logprobs", batch_size: int | str | None = None, progress=None) -> Features:
    """Pooled vision/language states per layer (L+1, n, h), target (n, k) and per-question answers.

    target="logprobs": log-probabilities (nats) over the answer set at the answer position, from each
    answer's first token; target="hidden": the final-layer state at the answer position.
    `batch_size`: questions per forward pass, or "auto" (pidcore.extract.loading: the largest that fits);
    None: PIDFLOW_BATCH_SIZE, else 8. A batch that runs out of memory is run again in halves.
    """
    batch_size = resolve_batch_size(batch_size)
    items = check_extract_arguments(items, target, batch_size, "extract")
    answers = list(answers)
    answer_ids = torch.tensor(adapter.answer_token_ids(answers), device=adapter.device)
    pooled = PooledStates(adapter.num_layers, language_pooling)
    vision, language, targets, log_answer = [], [], [], []
    bar, update = _progress_callback(progress, len(items), "knockout" if knockout else "extract")
    sizer = BatchSizer.for_adapter(adapter, batch_size)
    with ExitStack() as stack, torch.inference_mode():
        stack.enter_context(pooling_hooks(adapter.decoder_layers, adapter.final_norm, pooled))
        stack.enter_context(adapter.vision_source_hooks(pooled))
        set_roles = stack.enter_context(adapter.knockout_applied(knockout)) if knockout else None

        def run_batch(chunk, start):
            inputs, roles = adapter.encode(chunk)
            pooled.start_batch(roles)
            if set_roles:
                set_roles(roles)
            output = adapter.model(**inputs, use_cache=False, logits_to_keep=1)
            batch_vision, batch_language = pooled.stacked()
            scores = torch.log_softmax(output.logits[:, -1].float()[:, answer_ids], dim=-1)
            kept = (batch_vision.cpu().numpy(), batch_language.cpu().numpy(), scores.cpu().numpy(),
                    scores.cpu().numpy() if target == "logprobs" else pooled.answer_state.cpu().numpy())
            for stored, value in zip((vision, language, log_answer, targets), kept, strict=True):
                stored.append(value)  # only once the whole batch ran: a batch out of memory leaves nothing

        run_batches(items, sizer, run_batch, on_done=update)
    if bar is not None:
        bar.close()
    return build_features(adapter, items, answers, vision, language, targets, log_answer, knockout=knockout,
                          target=target, language_pooling=language_pooling)


def build_features(adapter, items, answers, vision, language, targets, log_answer, *, knockout, target,
                   language_pooling) -> Features:
    """Features from per-batch lists: vision/language (L+1, b, h), targets (b, k), log_answer (b, answers)."""
    answer_index = {answer: index for index, answer in enumerate(answers)}
    log_answer = np.concatenate(log_answer)
    gold = np.array([answer_index.get(item.answer, -1) for item in items])
    p_correct = np.where(gold >= 0, np.exp(log_answer[np.arange(len(items)), np.maximum(gold, 0)]), 0.0)
    predicted = np.array([answers[index] for index in log_answer.argmax(axis=1)])
    meta = {"model": adapter.describe(), "target": target, "language_pooling": language_pooling,
            "knockout": {"edges": list(knockout.edges), "layers": list(knockout.layers)} if knockout else None}
    return Features(
        vision=np.concatenate(vision, axis=1), language=np.concatenate(language, axis=1),
        target=np.concatenate(targets).astype(np.float32),
        qids=np.array([item.qid for item in items]), tasks=np.array([item.task for item in items]),
        answers=np.array([item.answer for item in items]), predicted=predicted,
        p_correct=p_correct.astype(np.float64), correct=predicted == np.array([item.answer for item in items]),
        answer_set=np.array(answers), questions=np.array([item.question for item in items]),
        image_ids=np.array([item.image_id for item in items]), meta=meta)
