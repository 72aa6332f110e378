"""Token roles found from the inputs: image positions, question positions, the answer (last) position."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BatchRoles:
    """Boolean (batch, seq) masks of each role plus the answer index per item (left or right padding)."""

    attention_mask: torch.Tensor  # (b, t) 1 = real token
    image: torch.Tensor  # (b, t) bool
    question: torch.Tensor  # (b, t) bool
    answer_index: torch.Tensor  # (b,) long: the last non-pad position

    @property
    def last(self) -> torch.Tensor:
        """(b, t) bool mask of the answer position."""
        mask = torch.zeros_like(self.image)
        mask[torch.arange(mask.shape[0]), self.answer_index] = True
        return mask


def question_flags(tokenizer, prompt: str, span: tuple[int, int]) -> list[tuple[int, bool]]:
    """(token id, inside the question's character span) for each token of the unexpanded prompt."""
    encoded = tokenizer(prompt, return_offsets_mapping=True)
    start, end = span
    return [(token, begin < end and stop > start and stop > begin)
            for token, (begin, stop) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)]


def align_question(ids: list[int], flags: list[tuple[int, bool]], image_token_id: int) -> list[int]:
    """Indexes into `ids` of the question's tokens, found by aligning the prompt's own tokens (`flags`)
    onto the processor's ids, which may hold more: expanded image tokens, <boi>/<eoi>, <img>/</img>, tile
    and row tokens, [IMG_BREAK], a BOS after the image. Every question token must be matched, in order,
    with the same ids; otherwise ValueError."""
    from difflib import SequenceMatcher

    reference = [token for token, _ in flags]
    wanted = [index for index, (_, flag) in enumerate(flags) if flag]
    matcher = SequenceMatcher(a=reference, b=ids, autojunk=False)
    mapped = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            mapped[block.a + offset] = block.b + offset
    missing = [index for index in wanted if index not in mapped or reference[index] == image_token_id]
    if missing:
        raise ValueError(f"token roles: {len(missing)} of the question's {len(wanted)} tokens are not in the "
                         f"processor's ids; cannot locate the question")
    return [mapped[index] for index in wanted]


def find_roles(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
               flags_per_item: list[list[tuple[int, bool]]]) -> BatchRoles:
    """Roles of a padded batch (either padding side): image positions hold `image_token_id`; the question
    is located by aligning each item's prompt tokens (`question_flags`) onto its ids (`align_question`).
    """
    image = (input_ids == image_token_id) & attention_mask.bool()
    question = torch.zeros_like(image)
    for row, flags in enumerate(flags_per_item):
        positions = torch.nonzero(attention_mask[row].bool()).flatten()
        found = align_question(input_ids[row, positions].tolist(), flags, image_token_id)
        question[row, positions[found]] = True
    question &= ~image
    if not bool(image.any(dim=1).all()):
        raise ValueError("token roles: an item has no image tokens")
    if not bool(question.any(dim=1).all()):
        raise ValueError("token roles: an item has no question tokens")
    width = attention_mask.shape[1]
    positions = torch.arange(width, device=attention_mask.device).expand_as(attention_mask)
    answer_index = torch.where(attention_mask.bool(), positions, -1).max(dim=1).values
    return BatchRoles(attention_mask=attention_mask, image=image, question=question, answer_index=answer_index)
