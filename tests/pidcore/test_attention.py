"""Attention to the image on the demo model: maps are probabilities over patches (mean over heads equals
the mean of the per-head maps), shares stay in [0, 1], and an image->question knockout leaves the question
tokens no attention to the image in its window while layers before it are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from pidcore.attention import image_attention, patch_grid


@pytest.fixture(scope="module")
def demo():
    from pidcore.data import answer_set, load_questions
    from pidcore.extract.adapters import load_adapter

    adapter = load_adapter("demo", attn_implementation="eager", device="cpu")
    item = load_questions("easy-vqa", ["color"], split="test", n=1)[0]
    return adapter, item, answer_set("easy-vqa")


def test_patch_grid():
    assert patch_grid(16) == (4, 4) and patch_grid(576) == (24, 24) and patch_grid(10) == (1, 10)


def test_maps_are_shares_of_attention_and_a_knockout_blocks_them(demo):
    from pidcore.extract.knockout import Knockout

    adapter, item, answers = demo
    base = image_attention(adapter, item, answers=answers)
    assert base["grid"] == [4, 4] and len(base["layers"]) == adapter.num_layers
    for layer in base["layers"]:
        heads = np.array(layer["question_heads"])
        assert heads.shape == (base["heads"], 4, 4)
        assert np.array(layer["question"]) == pytest.approx(heads.mean(axis=0), abs=1e-6)
        assert 0.0 <= np.sum(layer["last"]) <= 1.0 + 1e-6
    assert base["answer"]["predicted"] in answers and 0 < base["answer"]["p"] <= 1
    knocked = image_attention(adapter, item, knockout=Knockout(["image->question"], [2, 3]), answers=answers)
    for index in (2, 3):
        assert np.sum(knocked["layers"][index]["question"]) == pytest.approx(0.0, abs=1e-6)
    for index in (0, 1):  # before the window nothing changes
        assert np.array(knocked["layers"][index]["question"]) == pytest.approx(np.array(base["layers"][index]["question"]), abs=1e-6)
    assert np.sum(base["layers"][2]["question"]) > 0.01
