"""Attention knockouts: untouched before the window, changed after it, exact when empty, zero weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pidcore.extract import Knockout, extract, load_adapter
from pidcore.extract.knockout import blocked_pairs
from pidcore.extract.roles import BatchRoles

from .conftest import ANSWERS, make_items


@pytest.fixture(scope="module")
def ko_items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("ko"), n=4)


@pytest.fixture(scope="module")
def eager(llava_folder):
    return load_adapter(str(llava_folder), attn_implementation="eager")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_window_leaves_earlier_layers_identical_and_changes_later(attention, llava_folder, ko_items):
    model = load_adapter(str(llava_folder), attn_implementation=attention)
    baseline = extract(model, ko_items, answers=ANSWERS, batch_size=4)
    knocked = extract(model, ko_items, answers=ANSWERS, batch_size=4,
                      knockout=Knockout(["image->question"], (2, 3)))
    # pooled layer i is decoder layer i-1's output: layers 0..2 come before the window
    for layer in range(3):
        np.testing.assert_array_equal(knocked.language[layer], baseline.language[layer])
        np.testing.assert_array_equal(knocked.vision[layer], baseline.vision[layer])
    assert np.abs(knocked.language[3] - baseline.language[3]).min(axis=1).max() > 0
    assert np.abs(knocked.language[3] - baseline.language[3]).max() > 1e-3
    # image tokens come before the question: their own states are causal-blind to this knockout
    np.testing.assert_allclose(knocked.vision[3], baseline.vision[3], atol=1e-5)
    assert knocked.meta["knockout"] == {"edges": ["image->question"], "layers": [2, 3]}


def test_eager_and_sdpa_knockouts_agree(llava_folder, eager, ko_items):
    sdpa = load_adapter(str(llava_folder), attn_implementation="sdpa")
    knockout = Knockout(["image->last", "question->last"], (0, 3))
    a = extract(sdpa, ko_items, answers=ANSWERS, knockout=knockout)
    b = extract(eager, ko_items, answers=ANSWERS, knockout=knockout)
    np.testing.assert_allclose(a.target, b.target, atol=1e-4)


def test_empty_knockout_equals_baseline_exactly(adapter, ko_items):
    baseline = extract(adapter, ko_items, answers=ANSWERS, batch_size=2)
    empty = extract(adapter, ko_items, answers=ANSWERS, batch_size=2, knockout=Knockout([], (0, 3)))
    for name in ("vision", "language", "target"):
        np.testing.assert_array_equal(getattr(empty, name), getattr(baseline, name))


def test_blocked_attention_weights_are_zero(eager, ko_items):
    inputs, roles = eager.encode(ko_items)
    knockout = Knockout(["image->question", "image->last", "last->last"], (1, 2))
    with torch.no_grad(), knockout.applied(eager.decoder_layers, eager.dtype) as set_roles:
        set_roles(roles)
        output = eager.model(**inputs, use_cache=False, output_attentions=True)
    blocked = blocked_pairs(roles, knockout.edges)
    assert int(blocked.sum()) > 0
    for layer, weights in enumerate(output.attentions):  # (b, heads, q, k)
        values = weights.permute(0, 2, 3, 1)[blocked]
        if layer in (1, 2):
            assert float(values.abs().max()) == 0.0
        else:
            assert float(values.min()) > 0.0


def test_knockout_validation():
    with pytest.raises(ValueError, match="unknown knockout edge"):
        Knockout(["image->answer"], (0, 1))
    with pytest.raises(ValueError, match="first <= last"):
        Knockout(["image->last"], (3, 1))
    with pytest.raises(ValueError, match="two integers"):
        Knockout(["image->last"], (1,))


def test_window_outside_model_is_an_error(adapter, ko_items):
    with pytest.raises(ValueError, match="outside the model"):
        extract(adapter, ko_items, answers=ANSWERS, knockout=Knockout(["image->last"], (2, 9)))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_knockout_batched_equals_one_at_a_time(attention, llava_folder, ko_items):
    model = load_adapter(str(llava_folder), attn_implementation=attention)
    knockout = Knockout(["image->question", "question->last"], (1, 2))
    batched = extract(model, ko_items, answers=ANSWERS, knockout=knockout, batch_size=3)
    single = extract(model, ko_items, answers=ANSWERS, knockout=knockout, batch_size=1)
    for name in ("vision", "language", "target"):
        np.testing.assert_allclose(getattr(batched, name), getattr(single, name), rtol=1e-4, atol=1e-5)


def test_edge_roles_are_disjoint_when_the_prompt_ends_inside_the_question():
    # positions: 0-1 image, 2-4 question, and 4 is also the answer (last) position
    roles = BatchRoles(attention_mask=torch.ones(1, 5, dtype=torch.long),
                       image=torch.tensor([[True, True, False, False, False]]),
                       question=torch.tensor([[False, False, True, True, True]]),
                       answer_index=torch.tensor([4]))
    to_question = blocked_pairs(roles, ["image->question"])[0]
    to_last = blocked_pairs(roles, ["image->last"])[0]
    assert to_question.nonzero().tolist() == [[2, 0], [2, 1], [3, 0], [3, 1]]
    assert to_last.nonzero().tolist() == [[4, 0], [4, 1]]
    assert blocked_pairs(roles, ["question->last"])[0].nonzero().tolist() == [[4, 2], [4, 3]]
