"""The demo model's architecture, word-level tokenizer and processor (transformers' own LLaVA classes).

Vision: a CLIP ViT over 64x64 easy-VQA images; decoder: a small Llama; projector: LLaVA's 2-layer MLP.
The prompt is "<image>\\n{question}"; the answer word is read from the logits at the last position.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

PROMPT_TEMPLATE = "<image>\n{question}"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN)


@dataclass(frozen=True)
class DemoArchitecture:
    """Sizes of the demo model (the defaults are the shipped model)."""

    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 6
    text_heads: int = 4
    text_intermediate: int = 344

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def easy_vqa_vocabulary() -> list[str]:
    """Every word of easy-VQA's questions and answers (both splits), sorted."""
    import easy_vqa

    words: set[str] = set(easy_vqa.get_answers())
    for texts, _, _ in (easy_vqa.get_train_questions(), easy_vqa.get_test_questions()):
        for text in texts:
            words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return sorted(words)


def build_tokenizer(words: list[str] | None = None):
    """A word-level PreTrainedTokenizerFast (lower-cases, splits words and punctuation, adds <s>)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = easy_vqa_vocabulary() if words is None else words
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", padding_side="left", model_max_length=512)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


def build_processor(arch: DemoArchitecture = DemoArchitecture(), tokenizer=None):
    """LlavaProcessor = word-level tokenizer + CLIPImageProcessorPil at the vision tower's size."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    side = {"height": arch.image_size, "width": arch.image_size}
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": arch.image_size}, crop_size=side)
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=arch.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1)


def build_config(arch: DemoArchitecture, tokenizer):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=arch.vision_hidden, intermediate_size=4 * arch.vision_hidden,
        num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
        image_size=arch.image_size, patch_size=arch.patch_size, num_channels=3,
        projection_dim=arch.vision_hidden)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=arch.text_hidden,
        intermediate_size=arch.text_intermediate, num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads, num_key_value_heads=arch.text_heads,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False)
    return LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=arch.num_image_tokens, vision_feature_select_strategy="default",
        vision_feature_layer=-1, projector_hidden_act="gelu")


def build_llava(arch: DemoArchitecture = DemoArchitecture(), *, seed: int = 0, tokenizer=None):
    """A freshly initialised LlavaForConditionalGeneration (seeded) and its LlavaProcessor."""
    import torch
    from transformers import LlavaForConditionalGeneration

    processor = build_processor(arch, tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_config(arch, processor.tokenizer))
    return model, processor


def count_parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def save_demo(model, processor, folder: str | Path, arch: DemoArchitecture, extra: dict | None = None) -> Path:
    """save_pretrained model + processor, plus pidflow.json (prompt template, dataset, provenance)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    meta = {"prompt_template": PROMPT_TEMPLATE, "dataset": "easy-vqa", "architecture": asdict(arch),
            **(extra or {})}
    (folder / "pidflow.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder
