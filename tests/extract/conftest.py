"""Tiny LLaVA-1.5 and LLaVA-1.6 checkpoints built from configs, saved and loaded back like real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pidcore.data.items import VQAItem

WORDS = ["what", "color", "is", "the", "shape", "?", "does", "image", "contain", "a", "red", "blue", "green",
         "circle", "triangle", "rectangle", "yes", "no", "there", "in", "this"]
ANSWERS = ["red", "blue", "green", "circle", "triangle", "rectangle", "yes", "no"]
QUESTIONS = ["what color is the shape ?", "what is the shape ?", "does the image contain a red shape ?",
             "is there a circle in this image ?", "what color is the circle ?", "what shape is in the image ?"]



@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # tests/conftest.py
    yield


def _tokenizer(words=None):
    from pidcore.demo.build import build_tokenizer

    return build_tokenizer(WORDS if words is None else words)


def _vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            image_size=16, patch_size=8, projection_dim=16)


def _text_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def save_tiny_llava(folder, template="<image>\n{question}", words=None):
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = _tokenizer(words)
    config = LlavaConfig(vision_config=_vision_config(), text_config=_text_config(tokenizer),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=4,
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if template is not None:
        (folder / "pidflow.json").write_text(json.dumps({"prompt_template": template, "dataset": "easy-vqa"}))
    return folder


def save_tiny_llava_next(folder, template="<image>\n{question}"):
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tokenizer = _tokenizer()
    pinpoints = [[16, 16], [16, 32], [32, 16]]
    config = LlavaNextConfig(vision_config=_vision_config(), text_config=_text_config(tokenizer),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_select_strategy="default",
                             vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "pidflow.json").write_text(json.dumps({"prompt_template": template, "dataset": "easy-vqa"}))
    return folder


def make_items(folder, n=6, sizes=((16, 16),)):
    """Questions of different lengths over random images (sizes cycle: LLaVA-1.6 token counts vary)."""
    rng = np.random.default_rng(0)
    items = []
    for index in range(n):
        width, height = sizes[index % len(sizes)]
        path = folder / f"img{index}.png"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
        items.append(VQAItem(qid=f"t.test.{index}", dataset="easy-vqa", task="color",
                             question=QUESTIONS[index % len(QUESTIONS)], answer=ANSWERS[index % 3],
                             image_id=f"t.test.{index}", image_path=str(path)))
    return items


@pytest.fixture(scope="session")
def llava_folder(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="session")
def llava_next_folder(tmp_path_factory):
    return save_tiny_llava_next(tmp_path_factory.mktemp("llava_next"))


@pytest.fixture(scope="session")
def items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def adapter(llava_folder):
    from pidcore.extract import load_adapter

    return load_adapter(str(llava_folder))
