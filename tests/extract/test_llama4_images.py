"""pidflow's PIL image processor for Llama 4, against the worked examples of transformers' torchvision one,
and the forward fix (transformers 5.24's forward fails on every call without it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pidcore.extract.llama4_images import (
    Llama4ImageProcessorPil,
    best_canvas,
    canvases,
    fit_without_distortion,
)


def test_canvases_and_choices_match_the_documented_examples():
    assert canvases(4, 224) == [(224, 896), (448, 448), (224, 224), (896, 224), (224, 672), (672, 224), (224, 448),
                                (448, 224)]
    options = [(224, 672), (672, 224), (224, 448), (448, 224), (224, 224)]
    assert best_canvas(200, 300, options) == (224, 448)  # smallest upscale 1.12, then the smaller area
    # floored, as transformers' code computes them (its docstring's examples say 134 and 338)
    assert fit_without_distortion(200, 300, 450, 200) == (133, 200)
    assert fit_without_distortion(800, 600, 450, 1300) == (450, 337)


@pytest.mark.parametrize(("height", "width", "ratio", "tiles"), [
    (336, 336, [1, 1], 1),  # one tile, no global tile
    (336, 672, [1, 2], 3),  # two tiles side by side, then the global tile
    (500, 300, [2, 1], 3),  # kept at 500 x 300 (no upscale past one tile side) in a 672 x 336 canvas, padded black
])
def test_real_size_tiles(height, width, ratio, tiles):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    out = Llama4ImageProcessorPil()([image], return_tensors="pt")
    assert out["pixel_values"].shape == (tiles, 3, 336, 336) and out["aspect_ratios"].tolist() == [ratio]
    values = out["pixel_values"]
    assert float(values.min()) >= -1.0 and float(values.max()) <= 1.0
    assert torch.equal(values, values.to(torch.bfloat16).to(torch.float32))  # normalised in bfloat16
    if width == 300:  # black (-1) below row 500 and right of column 300
        assert torch.all(values[1, :, -1, :] == -1.0) and not torch.all(values[0, :, -1, :] == -1.0)


def test_the_model_runs_only_with_the_output_fix(tmp_path):
    from transformers import Llama4ForConditionalGeneration

    from pidcore.extract import load_adapter

    from .conftest import make_items
    from .tiny_families import build_llama4

    folder = build_llama4(tmp_path / "model")
    item = make_items(tmp_path, n=1, sizes=((32, 16),))[0]
    adapter = load_adapter(str(folder))
    text, _ = adapter.prompt(item.question)
    inputs = adapter.processor_inputs([text], [item.load_image()])
    assert int((inputs["input_ids"] == adapter.image_token_id).sum()) == 3 * 4  # 2 tiles + global, 4 tokens each
    with torch.no_grad():
        fixed = adapter.model(**inputs, use_cache=False).logits
        bare = Llama4ForConditionalGeneration.from_pretrained(folder).eval()
        for return_dict in (True, False):
            with pytest.raises(AttributeError, match="image_outputs"):
                bare(**inputs, use_cache=False, return_dict=return_dict)
        # what the forward computes up to the failing line: image features into the embeddings, the decoder
        ids = inputs["input_ids"]
        states = bare.get_image_features(pixel_values=inputs["pixel_values"]).last_hidden_state
        embeddings = bare.get_input_embeddings()(ids)
        embeddings[ids == adapter.image_token_id] = bare.multi_modal_projector(states.reshape(-1, states.shape[-1]))
        own = bare.language_model(inputs_embeds=embeddings, attention_mask=inputs["attention_mask"],
                                  use_cache=False).logits
    torch.testing.assert_close(fixed, own)
