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


def find_roles(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
               flags_per_item: list[list[tuple[int, bool]]]) -> BatchRoles:
    """Roles of a padded batch; the question mask is aligned to each item's tokens, not to offsets.

    flags_per_item: from `question_flags` for the same prompts; the model's ids must equal them once the
    image tokens (expanded by the processor) are set aside, else ValueError.
    """
    image = (input_ids == image_token_id) & attention_mask.bool()
    question = torch.zeros_like(image)
    for row, flags in enumerate(flags_per_item):
        real = attention_mask[row].bool() & ~image[row]
        positions = torch.nonzero(real).flatten()
        reference = [(token, flag) for token, flag in flags if token != image_token_id]
        ids = input_ids[row, positions].tolist()
        if ids != [token for token, _ in reference]:
            raise ValueError(f"token roles: item {row}'s ids differ from its prompt's tokens; cannot locate the question")
        question[row, positions] = torch.tensor([flag for _, flag in reference], dtype=torch.bool)
    if not bool(image.any(dim=1).all()):
        raise ValueError("token roles: an item has no image tokens")
    if not bool(question.any(dim=1).all()):
        raise ValueError("token roles: an item has no question tokens")
    width = attention_mask.shape[1]
    positions = torch.arange(width, device=attention_mask.device).expand_as(attention_mask)
    answer_index = torch.where(attention_mask.bool(), positions, -1).max(dim=1).values
    return BatchRoles(attention_mask=attention_mask, image=image, question=question, answer_index=answer_index)
