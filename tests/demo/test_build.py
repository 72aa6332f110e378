"""The demo architecture: documented size, processor/tokenizer agreement, save/load round trip."""

import pytest
import torch
from PIL import Image

from pidcore.demo.build import DemoArchitecture, build_llava, count_parameters, save_demo
from pidcore.demo.tensors import prompt_ids

TINY = DemoArchitecture(patch_size=16, vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=6,
                        text_intermediate=64)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return build_llava(TINY, seed=0)


def test_default_architecture_has_the_documented_size():
    model, processor = build_llava()
    arch = DemoArchitecture()
    assert count_parameters(model) == 1_636_192
    assert len(model.model.language_model.layers) == 6
    assert model.config.vision_feature_select_strategy == "default"
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert arch.num_image_tokens == 16 and arch.patch_size == 16


def test_processor_expands_the_image_token_like_the_training_encoder(tiny):
    _, processor = tiny
    image = Image.new("RGB", (64, 64), (200, 10, 10))
    encoded = processor(images=[image], text=["<image>\nwhat color is the shape?"], return_tensors="pt")
    assert encoded["input_ids"][0].tolist() == prompt_ids(processor.tokenizer, "what color is the shape?", 16)
    assert encoded["pixel_values"].shape == (1, 3, 64, 64)
    assert processor.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0, -6:].tolist()) == [
        "what", "color", "is", "the", "shape", "?"]


def test_unknown_words_map_to_unk_and_answers_are_single_tokens(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    assert tokenizer("zebra", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    for answer in ("yes", "no", "circle", "teal"):
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1


def test_saved_checkpoint_loads_through_the_real_checkpoint_path(tiny, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, processor = tiny
    save_demo(model, processor, tmp_path, TINY)
    loaded = LlavaForConditionalGeneration.from_pretrained(tmp_path)
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    images = [Image.new("RGB", (64, 64), (0, 0, 255)), Image.new("RGB", (64, 64), (0, 255, 0))]
    texts = ["<image>\nis there a circle?", "<image>\nwhat is the color of the shape?"]
    batch = loaded_processor(images=images, text=texts, return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # left padding: the answer is at the last position
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    meta = (tmp_path / "pidflow.json").read_text()
    assert '"prompt_template": "<image>\\n{question}"' in meta and '"dataset": "easy-vqa"' in meta
