"""Token roles and role pooling over activations you cached yourself (nnsight, TransformerLens, vLLM).

The same pooling pidflow's own extraction does inside its forward hooks (pidcore.extract.pooling), as plain
functions over a stacked tensor of hidden states:

- `token_roles(...)`: which positions hold image tokens, which the question, and the answer (last real)
  position, found from the processor's ids and the prompt text (as pidcore.extract does);
  `roles_from_masks(...)` when you already know the positions.
- `pool_roles(hidden, roles, axes=...)`: per layer, the mean over image positions (vision) and the mean
  (or last) over question positions (language). `axes` names the tensor's axes: "layer token hidden" (the
  default; a stack of Hugging Face `hidden_states` or nnsight layer outputs for one question),
  "token layer hidden" (vLLM's per-request hidden-state export), with "batch" anywhere for a batch
  ("layer batch token hidden" = `torch.stack(output.hidden_states)`, TransformerLens's
  `cache.stack_activation("resid_post")`).
- `answer_states(...)` (target "hidden") and `answer_logprobs(...)` (target "logprobs": log-probabilities
  over the answer set at the answer position, nats, each answer's first token).

Arrays come back as float32 numpy: vision and language (layers, questions, hidden), ready for
`pidcore.features.files.write_features`.
"""

from __future__ import annotations

import numpy as np
import torch

from pidcore.extract.pooling import role_weights
from pidcore.extract.roles import BatchRoles, find_roles, question_flags

AXES = ("batch", "layer", "token", "hidden")


def roles_from_masks(image, question, attention_mask=None) -> BatchRoles:
    """Roles from boolean (tokens,) or (batch, tokens) masks of the image and question positions; the
    answer position is the last real token (attention_mask 1; every token when it is None)."""
    image, question = _batched(image).bool(), _batched(question).bool()
    if image.shape != question.shape:
        raise ValueError(f"image and question masks differ in shape: {tuple(image.shape)} vs {tuple(question.shape)}")
    mask = torch.ones_like(image, dtype=torch.long) if attention_mask is None else \
        _batched(attention_mask).long().to(image.device)
    if mask.shape != image.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, the role masks {tuple(image.shape)}")
    real = mask.bool()
    for name, role in (("image", image), ("question", question)):
        if not bool((role & real).any(dim=1).all()):
            raise ValueError(f"token roles: an item has no {name} positions")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    answer_index = torch.where(real, positions, -1).max(dim=1).values
    return BatchRoles(attention_mask=mask, image=image & real, question=question & real, answer_index=answer_index)


def token_roles(input_ids, *, tokenizer, prompts, questions, image_token_id: int, attention_mask=None) -> BatchRoles:
    """Roles of the processor's ids (tokens,) or (batch, tokens), left or right padded.

    prompts: the text given to the processor for each item (one string for a single item); questions: the
    question inside each prompt (its last occurrence is taken). The ids must be the prompt's tokens with
    the image placeholder expanded, else ValueError (as pidcore.extract.roles.find_roles).
    """
    ids = _batched(input_ids).long()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    questions = [questions] if isinstance(questions, str) else list(questions)
    if not (len(prompts) == len(questions) == ids.shape[0]):
        raise ValueError(f"{ids.shape[0]} item(s) of ids but {len(prompts)} prompt(s) and {len(questions)} question(s)")
    mask = torch.ones_like(ids) if attention_mask is None else _batched(attention_mask).long()
    flags = []
    for prompt, question in zip(prompts, questions, strict=True):
        start = prompt.rfind(question)
        if not question or start < 0:
            raise ValueError(f"token roles: question {question!r} is not in its prompt {prompt!r}")
        flags.append(question_flags(tokenizer, prompt, (start, start + len(question))))
    return find_roles(ids, mask, image_token_id, flags)


def pool_roles(hidden, roles: BatchRoles, *, axes: str = "layer token hidden",
               language_pooling: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(vision, language) float32: (layers, hidden) for one item, (layers, batch, hidden) with a batch axis.

    Vision is the mean over image positions; language the mean over question positions ("mean") or the
    state at the last question position ("last"). Padding positions are never included.
    """
    if language_pooling not in ("mean", "last"):
        raise ValueError(f"language_pooling must be 'mean' or 'last', got {language_pooling!r}")
    states, single = _canonical(hidden, axes)  # (batch, layer, token, hidden)
    _check_roles(states, roles)
    weights = role_weights(roles, language_pooling).to(states.device)  # (batch, 2, token)
    pooled = torch.einsum("bst,blth->slbh", weights.double(), states.double()).float().cpu().numpy()
    vision, language = pooled[0], pooled[1]  # (layer, batch, hidden)
    return (vision[:, 0], language[:, 0]) if single else (vision, language)


def answer_states(hidden, roles: BatchRoles, *, axes: str = "layer token hidden", layer: int = -1) -> np.ndarray:
    """The state at the answer position in `layer` (default the last): (hidden,) or (batch, hidden) float32."""
    states, single = _canonical(hidden, axes)
    _check_roles(states, roles)
    rows = torch.arange(states.shape[0], device=states.device)
    picked = states[rows, layer, roles.answer_index.to(states.device)].float().cpu().numpy()
    return picked[0] if single else picked


def answer_logprobs(logits, answer_token_ids) -> np.ndarray:
    """log-softmax (nats) over the answer set of logits at the answer position: (vocab,) -> (k,), or
    (batch, vocab) -> (batch, k); answer_token_ids: each answer's first token id."""
    scores = torch.as_tensor(logits).float()
    ids = torch.as_tensor(list(answer_token_ids), dtype=torch.long)
    return torch.log_softmax(scores[..., ids], dim=-1).cpu().numpy()


# -- helpers ----------------------------------------------------------------------------------------------

def _batched(values) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.dim() == 1:
        tensor = tensor[None]
    if tensor.dim() != 2:
        raise ValueError(f"expected (tokens,) or (batch, tokens), got shape {tuple(tensor.shape)}")
    return tensor


def _canonical(hidden, axes: str) -> tuple[torch.Tensor, bool]:
    """The hidden states as (batch, layer, token, hidden) and whether the input had no batch axis."""
    names = axes.replace(",", " ").split()
    if len(set(names)) != len(names) or not set(names) <= set(AXES) or not {"layer", "token", "hidden"} <= set(names):
        raise ValueError(f"axes must name layer, token and hidden (and optionally batch) once each, got {axes!r}")
    tensor = torch.as_tensor(hidden) if not isinstance(hidden, list | tuple) else torch.stack(
        [torch.as_tensor(h) for h in hidden])
    if tensor.dim() != len(names):
        raise ValueError(f"hidden states have {tensor.dim()} axes {tuple(tensor.shape)} but axes={axes!r} names "
                         f"{len(names)}")
    single = "batch" not in names
    if single:
        tensor, names = tensor[None], ["batch", *names]
    return tensor.permute(*[names.index(name) for name in AXES]), single


def _check_roles(states: torch.Tensor, roles: BatchRoles) -> None:
    batch, _, tokens, _ = states.shape
    if tuple(roles.image.shape) != (batch, tokens):
        raise ValueError(f"roles are for {tuple(roles.image.shape)} (batch, tokens) but the hidden states have "
                         f"batch {batch} and {tokens} tokens")
