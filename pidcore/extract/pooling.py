"""Pooling inside forward hooks: per layer, mean over image positions and mean/last over question positions.

Nothing of shape layers x tokens x hidden is kept: each hook reduces its (batch, tokens, hidden) state at once.
Layer 0 is the decoder's input (embeddings with image features merged); layer i is decoder layer i-1's
output, and the last layer is taken after the final norm (as Hugging Face's hidden_states).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .roles import BatchRoles


def role_weights(roles: BatchRoles, language_pooling: str) -> torch.Tensor:
    """(b, 2, t) float32 pooling weights: row 0 averages image positions, row 1 the question positions
    (mean) or picks the last question position (last)."""
    image = roles.image.to(torch.float32)
    if language_pooling == "mean":
        question = roles.question.to(torch.float32)
    else:
        positions = torch.arange(roles.question.shape[1], device=roles.question.device).expand_as(roles.question)
        index = torch.where(roles.question, positions, -1).max(dim=1).values
        question = torch.zeros_like(image)
        question[torch.arange(question.shape[0]), index] = 1.0
    weights = torch.stack([image, question], dim=1)
    return weights / weights.sum(dim=2, keepdim=True).clamp_min(1.0)


class PooledStates:
    """Collects vision and language vectors for every layer of the current batch (one bmm per layer)."""

    def __init__(self, num_layers: int, language_pooling: str = "mean"):
        if language_pooling not in ("mean", "last"):
            raise ValueError(f"language_pooling must be 'mean' or 'last', got {language_pooling!r}")
        self.num_layers = num_layers  # decoder layers: L + 1 pooled layers
        self.language_pooling = language_pooling
        self.roles: BatchRoles | None = None
        self.weights: torch.Tensor | None = None
        self.pooled: list[torch.Tensor | None] = [None] * (num_layers + 1)
        self.answer_state: torch.Tensor | None = None
        self.vision_override: torch.Tensor | None = None

    def start_batch(self, roles: BatchRoles) -> None:
        self.roles = roles
        self.weights = role_weights(roles, self.language_pooling)
        self.pooled = [None] * (self.num_layers + 1)
        self.answer_state = None
        self.vision_override = None

    def set_vision(self, vision: torch.Tensor) -> None:
        """(b, h): a vision source that is not in the residual stream (a cross-attention model's projected
        image states), used at every layer."""
        self.vision_override = vision.to(torch.float32)

    def record(self, layer: int, hidden: torch.Tensor) -> None:
        weights = self.weights.to(device=hidden.device, dtype=hidden.dtype)  # layers may sit on other devices
        self.pooled[layer] = torch.bmm(weights, hidden).to(device=self.weights.device, dtype=torch.float32)
        if layer == self.num_layers:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            self.answer_state = hidden[rows.to(hidden.device), self.roles.answer_index.to(hidden.device)].to(
                device=self.weights.device, dtype=torch.float32)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """vision, language as (L+1, b, h) float32 tensors."""
        if any(p is None for p in self.pooled):
            raise RuntimeError("pooling hooks did not see every layer; was the forward pass complete?")
        both = torch.stack(self.pooled)
        vision = both[:, :, 0]
        if self.vision_override is not None:
            vision = self.vision_override[None].expand_as(vision).clone()
        return vision, both[:, :, 1]


@contextmanager
def pooling_hooks(decoder_layers, final_norm, pooled: PooledStates):
    """Attach the pooling hooks; they are removed on exit, also when an exception is raised inside."""
    handles = []
    last = len(decoder_layers) - 1

    def on_first_input(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        pooled.record(0, hidden)

    def make_output_hook(index):
        def on_output(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            pooled.record(index + 1, hidden)
        return on_output

    def on_norm(module, args, output):
        pooled.record(last + 1, output)

    try:
        handles.append(decoder_layers[0].register_forward_pre_hook(on_first_input, with_kwargs=True))
        for index, layer in enumerate(decoder_layers[:-1]):
            handles.append(layer.register_forward_hook(make_output_hook(index)))
        handles.append(final_norm.register_forward_hook(on_norm))
        yield pooled
    finally:
        for handle in handles:
            handle.remove()
