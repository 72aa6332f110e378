"""Where in the image a model looks: attention from the question tokens and from the last (answer)
position to the image patches, per decoder layer, mean over heads and per head, with and without a
knockout. Needs a model loaded with eager attention (sdpa returns no attention maps):
`load_adapter(model, attn_implementation="eager")`."""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch


def patch_grid(n_patches: int) -> tuple[int, int]:
    """(rows, columns) of the image tokens: a square when their count is one, else one row."""
    side = math.isqrt(n_patches)
    return (side, side) if side * side == n_patches else (1, n_patches)


def image_attention(adapter, item, *, knockout=None, answers: list[str] | None = None) -> dict:
    """Attention of one question (a VQAItem-like object: question, load_image()) to its image patches.

    Returns {"grid": [rows, cols], "heads": H, "layers": [{"decoder_layer": d, "question": rows x cols
    (mean over heads and question tokens), "last": rows x cols (mean over heads), "question_heads":
    H x rows x cols, "last_heads": H x rows x cols}], "share": {"question": [...], "last": [...]} (the
    fraction of each layer's attention that goes to the image at all), "answer": the predicted answer
    among `answers` with its probability (when `answers` is given)}. Attention weights are probabilities
    (rows of the softmax), so a map sums to its share of attention on the image."""
    if adapter.attention_implementation != "eager":
        raise ValueError("attention maps need the model loaded with attn_implementation='eager'")
    inputs, roles = adapter.encode([item])
    image = roles.image[0]
    last = int(roles.answer_index[0])
    question = roles.question[0] & ~roles.last[0]  # as knockouts count them: the answer position is `last` only
    if not bool(question.any()):
        question = roles.question[0]
    n_patches = int(image.sum())
    if n_patches == 0:
        raise ValueError("this model feeds the image through cross-attention: it has no image tokens to attend to")
    rows, cols = patch_grid(n_patches)
    with ExitStack() as stack, torch.inference_mode():
        if knockout is not None:
            set_roles = stack.enter_context(adapter.knockout_applied(knockout))
            set_roles(roles)
        output = adapter.model(**inputs, output_attentions=True, use_cache=False)
    layers, share_q, share_last = [], [], []
    for index, attention in enumerate(output.attentions):
        weights = attention[0].float()  # (heads, q, k)
        to_image = weights[:, :, image]  # (heads, q, patches)
        from_question = to_image[:, question].mean(dim=1)  # (heads, patches)
        from_last = to_image[:, last]
        layers.append({
            "decoder_layer": index,
            "question": from_question.mean(dim=0).reshape(rows, cols).tolist(),
            "last": from_last.mean(dim=0).reshape(rows, cols).tolist(),
            "question_heads": from_question.reshape(-1, rows, cols).tolist(),
            "last_heads": from_last.reshape(-1, rows, cols).tolist(),
        })
        share_q.append(float(from_question.sum(dim=1).mean()))
        share_last.append(float(from_last.sum(dim=1).mean()))
    result = {"grid": [rows, cols], "heads": int(output.attentions[0].shape[1]), "layers": layers,
              "share": {"question": share_q, "last": share_last}}
    if answers:
        ids = torch.tensor(adapter.answer_token_ids(list(answers)), device=output.logits.device)
        probabilities = torch.softmax(output.logits[0, -1].float()[ids], dim=-1)
        best = int(probabilities.argmax())
        result["answer"] = {"predicted": answers[best], "p": float(probabilities[best]),
                            "probabilities": {a: float(p) for a, p in zip(answers, probabilities.tolist(), strict=True)}}
    return result
