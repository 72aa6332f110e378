"""Attention knockouts: block chosen (query <- key) role pairs in a window of decoder layers.

The dtype minimum is written into a clone of the additive 4-D float mask of each chosen layer; when the
attention implementation passes no mask (sdpa), the causal + padding mask is built. Eager and sdpa alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .edges import EDGES
from .roles import BatchRoles


def _role_mask(roles: BatchRoles, role: str) -> torch.Tensor:
    """Positions of a role for knockouts. Roles are disjoint here: when a prompt ends inside the question
    (e.g. "<image>\n{question}"), its final token is the answer position and counts as `last` only, so
    image->question never also blocks image->last."""
    if role == "last":
        return roles.last
    if role == "question":
        return roles.question & ~roles.last
    return getattr(roles, role)


def blocked_pairs(roles: BatchRoles, edges: Sequence[str]) -> torch.Tensor:
    """(b, q, k) bool: the query/key pairs the edges block."""
    b, t = roles.image.shape
    blocked = torch.zeros(b, t, t, dtype=torch.bool, device=roles.image.device)
    for edge in edges:
        key_role, query_role = EDGES[edge]
        blocked |= _role_mask(roles, query_role)[:, :, None] & _role_mask(roles, key_role)[:, None, :]
    return blocked


def cross_rows(roles: BatchRoles, edges: Sequence[str]) -> torch.Tensor:
    """(b, t) bool: query rows that lose the image in cross-attention layers (edges whose key is the image)."""
    rows = torch.zeros_like(roles.image)
    for edge in edges:
        key_role, query_role = EDGES[edge]
        if key_role == "image":
            rows |= _role_mask(roles, query_role)
    return rows


def causal_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(b, 1, t, t) additive float mask: causal and padding-aware (0 allowed, dtype minimum blocked)."""
    t = attention_mask.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = allowed[None] & attention_mask.bool()[:, None, :]
    # a fully masked pad row would give NaN; let pad queries see themselves
    allowed |= torch.eye(t, dtype=torch.bool, device=attention_mask.device)[None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def knocked_mask(mask: torch.Tensor | None, roles: BatchRoles, blocked: torch.Tensor, dtype: torch.dtype):
    """A new additive float mask with `blocked` (b, q, k) set to the dtype minimum."""
    if mask is None:
        mask = causal_mask(roles.attention_mask, dtype)
    elif mask.dtype == torch.bool:  # bool mask: True = attend
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    else:
        mask = mask.clone()
    if mask.shape[1] != 1:
        mask = mask[:, :1].clone()
    mask = mask.expand(blocked.shape[0], 1, *mask.shape[2:]).clone()
    q, k = mask.shape[-2:]
    mask[:, 0][blocked[:, -q:, -k:].to(mask.device)] = torch.finfo(mask.dtype).min  # the layer's device
    return mask


@dataclass(frozen=True)
class Knockout:
    """Edges to block and an inclusive window (first, last) of decoder-layer indices."""

    edges: tuple[str, ...]
    layers: tuple[int, int]

    def __init__(self, edges: Sequence[str], layers: Sequence[int]):
        edges = tuple(edges)
        unknown = [edge for edge in edges if edge not in EDGES]
        if unknown:
            raise ValueError(f"unknown knockout edge(s) {unknown}; valid: {', '.join(EDGES)}")
        if len(tuple(layers)) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers):
            raise ValueError(f"knockout layers must be two integers (first, last), got {layers!r}")
        first, last = layers
        if first < 0 or last < first:
            raise ValueError(f"knockout layers must satisfy 0 <= first <= last, got ({first}, {last})")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "layers", (first, last))

    def check(self, num_layers: int) -> None:
        if self.layers[1] >= num_layers:
            raise ValueError(f"knockout layers {self.layers} outside the model's decoder layers 0..{num_layers - 1}")

    @contextmanager
    def applied(self, decoder_layers, dtype: torch.dtype, *, cross_attention_layers=(), causal_when_missing=True):
        """Context manager yielding a setter `set_roles(roles)` for each batch; hooks removed on exit.

        Self-attention layers get the edited mask. Cross-attention layers (`cross_attention_layers`,
        Mllama) get no image for the blocked query rows: their cross-attention output and gated MLP update
        are zeroed there, so the layer passes those rows through unchanged. `causal_when_missing=False`
        (bidirectional-prefix models) refuses a layer that receives no mask instead of building a causal one.
        """
        self.check(len(decoder_layers))
        state: dict = {}

        def set_roles(roles: BatchRoles) -> None:
            blocked = blocked_pairs(roles, self.edges)
            rows = cross_rows(roles, self.edges)
            state.clear()
            state.update(roles=roles, blocked=blocked if bool(blocked.any()) else None,
                         rows=rows if bool(rows.any()) else None, masks=[])

        def pre_hook(module, args, kwargs):
            if state.get("blocked") is None:
                return None
            incoming = kwargs.get("attention_mask")
            if incoming is None and not causal_when_missing:
                raise RuntimeError("knockout: this model's layer received no attention mask, and its mask is not "
                                   "causal; load it with attn_implementation='eager'")
            # the layers share a few masks per batch (full and sliding-window attention)
            mask = next((knocked for source, knocked in state["masks"] if source is incoming), None)
            if mask is None:
                mask = knocked_mask(incoming, state["roles"], state["blocked"], dtype)
                state["masks"].append((incoming, mask))
            kwargs = dict(kwargs)
            kwargs["attention_mask"] = mask
            return args, kwargs

        def cross_pre_hook(module, args, kwargs):
            if state.get("rows") is None:
                return None
            kwargs = dict(kwargs)
            keep = (~state["rows"])[:, None, :, None]
            incoming = kwargs.get("full_text_row_masked_out_mask")
            kwargs["full_text_row_masked_out_mask"] = keep.to(dtype) if incoming is None else incoming * keep
            return args, kwargs

        def cross_output_hook(module, args, output):
            if state.get("rows") is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden * (~state["rows"])[:, :, None].to(hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handles = []
        try:
            first, last = self.layers
            for index in range(first, last + 1):
                layer = decoder_layers[index]
                if index in cross_attention_layers:
                    handles.append(layer.register_forward_pre_hook(cross_pre_hook, with_kwargs=True))
                    handles.append(layer.cross_attn.register_forward_hook(cross_output_hook))
                else:
                    handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))
            yield set_roles
        finally:
            for handle in handles:
                handle.remove()
