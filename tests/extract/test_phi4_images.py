"""pidflow's PIL image processor for Phi-4 multimodal, against counts worked out by hand from transformers'
torchvision processor (448-pixel crops, 14-pixel patches), and the vision attention flag pidflow clears."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pidcore.extract.phi4_images import Phi4MultimodalImageProcessorPil, crop_grid


@pytest.mark.parametrize(("width", "height", "crops", "tokens", "valid_rows"), [
    (448, 448, 1, 256 + 16 + 1 + 256 + 16, 32),  # global 16 x (16 + 1), separator, one crop 16 x (16 + 1)
    (896, 448, 2, 256 + 16 + 1 + 512 + 16, 32),  # two crops side by side: 16 x (32 + 1)
    (448, 300, 1, 256 + 16 + 1 + 176 + 11, 22),  # padded 148 px at the bottom: 10 patch rows masked, 11 x 17
])
def test_real_size_shapes_masks_and_token_counts(width, height, crops, tokens, valid_rows):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    out = Phi4MultimodalImageProcessorPil()([image], return_tensors="pt")
    assert out["image_pixel_values"].shape == (1, 1 + crops, 3, 448, 448)
    assert out["image_attention_mask"].shape == (1, 1 + crops, 32, 32)
    assert out["image_sizes"].tolist() == [[448, 448 * crops]]
    assert out["num_img_tokens"].tolist() == [tokens]
    assert int(out["image_attention_mask"][0, 1, :, 0].sum()) == valid_rows
    if valid_rows < 32:  # the white padding normalises to 1.0
        assert torch.all(out["image_pixel_values"][0, 1, :, -1] == 1.0)
    crops_only = out["image_pixel_values"][0, 1:]  # (the global view is bicubic: it may overshoot)
    assert -1.0 <= float(crops_only.min()) < -0.9 and 0.9 < float(crops_only.max()) <= 1.0


def test_too_many_crops_fall_back_to_the_closest_aspect_ratio():
    assert crop_grid(448 * 8, 448, 448, 36) == (8, 1)
    assert crop_grid(448 * 10, 448 * 5, 448, 36) == (8, 4)  # 50 crops > 36: the 2:1 grid of at most 36


def test_the_vision_attention_is_bidirectional_after_loading(tmp_path):
    """transformers 5.24 flags Phi-4's SigLIP attention causal, so sdpa attends causally over an unpadded crop;
    pidflow clears the flag: the first patch then sees the last one."""
    from pidcore.extract import load_adapter

    from .tiny_families import build_phi4_multimodal

    adapter = load_adapter(str(build_phi4_multimodal(tmp_path)))
    assert adapter.attention_implementation == "sdpa"
    tower = adapter.model.model.embed_tokens_extend.image_embed.img_processor
    pixels = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    changed = pixels.clone()
    changed[..., -2:, -2:] += 1.0  # the last patch only
    with torch.no_grad():
        first, other = (tower(p).last_hidden_state[0, 0] for p in (pixels, changed))
    assert float((first - other).abs().max()) > 1e-4
