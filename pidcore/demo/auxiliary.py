"""Training-only auxiliary losses for the demo model (nothing here is saved with the checkpoint).

Both tie what the decoder sees of the image to the easy-VQA attribute words, so that yes/no questions
become a comparison between a question word and an attribute the model already holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pidcore.data import easyvqa


class ImageWordLoss:
    """The mean projected image token should point (cosine, `scale`) at the decoder's input embedding of
    the image's shape word and colour word. Captured by a forward hook on the projector; `remove()` it."""

    def __init__(self, model, tokenizer, scale: float = 10.0):
        self.embeddings = model.get_input_embeddings()
        self.word_ids = {name: torch.tensor(tokenizer.convert_tokens_to_ids(list(words)))
                         for name, words in (("shape", easyvqa.SHAPES), ("color", easyvqa.COLORS))}
        self.scale = scale
        self.pooled = None
        self.handle = model.model.multi_modal_projector.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self.pooled = output.mean(dim=1)

    def loss(self, shape_labels: torch.Tensor, color_labels: torch.Tensor) -> torch.Tensor:
        pooled = F.normalize(self.pooled, dim=-1)
        total = pooled.new_zeros(())
        for name, labels in (("shape", shape_labels), ("color", color_labels)):
            if bool((labels >= 0).any()):
                words = F.normalize(self.embeddings.weight[self.word_ids[name]], dim=-1)
                total = total + F.cross_entropy(self.scale * pooled @ words.T, labels, ignore_index=-100)
        return total

    def remove(self):
        self.handle.remove()


def question_labels(input_ids: torch.Tensor, tokenizer) -> dict[str, torch.Tensor]:
    """Per question: the shape word it names (len(SHAPES) if none), the colour word it names
    (len(COLORS) if none) and whether it is negated ("not" / "no"), read off its token ids."""
    labels = {}
    for name, words in (("shape", easyvqa.SHAPES), ("color", easyvqa.COLORS)):
        ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(words)))
        hits = input_ids[:, :, None] == ids
        named = hits.any(1)
        labels[name] = torch.where(named.any(1), named.float().argmax(1), len(words))
    negations = torch.tensor(tokenizer.convert_tokens_to_ids(["not", "no"]))
    labels["negated"] = (input_ids[:, :, None] == negations).any(2).any(1).long()
    return labels


class AnswerPositionProbes(torch.nn.Module):
    """Linear read-outs from the last (answer) position's hidden state after the given decoder layers:
    the image's shape and colour, and the shape word, colour word and negation the question names.
    The answer position must gather both sides mid-depth, leaving later layers to compare them."""

    TARGETS = {"shape": len(easyvqa.SHAPES), "color": len(easyvqa.COLORS),
               "question_shape": len(easyvqa.SHAPES) + 1, "question_color": len(easyvqa.COLORS) + 1,
               "negated": 2}

    def __init__(self, hidden: int, layers: tuple[int, ...], targets: tuple[str, ...] = tuple(TARGETS)):
        super().__init__()
        self.layers = tuple(layers)
        self.heads = torch.nn.ModuleDict({
            name: torch.nn.ModuleList(torch.nn.Linear(hidden, self.TARGETS[name]) for _ in self.layers)
            for name in targets})

    def loss(self, hidden_states, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over layers of the summed cross-entropies; labels -100 are ignored."""
        total = hidden_states[0].new_zeros(())
        for index, layer in enumerate(self.layers):
            last = hidden_states[layer][:, -1]
            for name, heads in self.heads.items():
                if bool((labels[name] >= 0).any()):
                    total = total + F.cross_entropy(heads[index](last), labels[name], ignore_index=-100)
        return total / len(self.layers)
