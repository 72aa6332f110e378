"""pidcore.features.pooled (roles and pooling over activations cached outside pidflow) gives what pidflow's own
extraction gives, on a tiny LLaVA checkpoint: a user's stacked hidden states, in either axis order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pidcore.extract import extract
from pidcore.features.pooled import answer_logprobs, answer_states, pool_roles, roles_from_masks, token_roles

from .conftest import ANSWERS, make_items


@pytest.fixture(scope="module")
def mixed_items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("byo"), n=5, sizes=((16, 16), (32, 16)))


@pytest.fixture(scope="module")
def cached(adapter, mixed_items):
    """What a user caches: the processor's ids, every layer's hidden states and the last logits."""
    inputs, roles = adapter.encode(mixed_items)
    with torch.no_grad():
        output = adapter.model(**inputs, output_hidden_states=True, use_cache=False)
    prompts = [adapter.prompt(item.question)[0] for item in mixed_items]
    return inputs, roles, torch.stack(output.hidden_states), output.logits[:, -1], prompts


def test_token_roles_equal_the_extractors(adapter, mixed_items, cached):
    inputs, roles, _, _, prompts = cached
    found = token_roles(inputs["input_ids"], tokenizer=adapter.tokenizer, prompts=prompts,
                        questions=[item.question for item in mixed_items], image_token_id=adapter.image_token_id,
                        attention_mask=inputs["attention_mask"])
    for name in ("image", "question", "answer_index"):
        assert torch.equal(getattr(found, name), getattr(roles, name)), name
    with pytest.raises(ValueError, match="not in its prompt"):
        token_roles(inputs["input_ids"][0], tokenizer=adapter.tokenizer, prompts=prompts[0],
                    questions="no such question", image_token_id=adapter.image_token_id)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_a_stack_of_hidden_states_equals_extract(adapter, mixed_items, cached, pooling):
    inputs, roles, hidden, logits, _ = cached
    expected = extract(adapter, mixed_items, answers=ANSWERS, language_pooling=pooling, batch_size=5)
    vision, language = pool_roles(hidden, roles, axes="layer batch token hidden", language_pooling=pooling)
    assert vision.shape == expected.vision.shape == (adapter.num_layers + 1, 5, adapter.hidden_size)
    np.testing.assert_allclose(vision, expected.vision, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(language, expected.language, rtol=1e-4, atol=1e-5)
    target = answer_logprobs(logits, adapter.answer_token_ids(ANSWERS))
    np.testing.assert_allclose(target, expected.target, rtol=1e-4, atol=1e-5)


def test_one_item_in_token_layer_hidden_order(adapter, mixed_items, cached):
    """One question as vLLM exports it: (tokens, layers, hidden) without padding; roles from masks."""
    inputs, roles, hidden, _, _ = cached
    expected = extract(adapter, mixed_items, answers=ANSWERS, target="hidden", batch_size=5)
    for row in range(len(mixed_items)):
        real = inputs["attention_mask"][row].bool()
        states = hidden[:, row, real].permute(1, 0, 2)  # (tokens, layers, hidden)
        item_roles = roles_from_masks(roles.image[row, real], roles.question[row, real])
        vision, language = pool_roles(states, item_roles, axes="token layer hidden")
        np.testing.assert_allclose(vision, expected.vision[:, row], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(language, expected.language[:, row], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(answer_states(states, item_roles, axes="token layer hidden"),
                                   expected.target[row], rtol=1e-4, atol=1e-5)


def test_public_names():
    import pidcore

    assert pidcore.pool_roles is pool_roles and pidcore.token_roles is token_roles
    assert {"read_features", "write_features", "analyze_features", "answer_logprobs"} <= set(pidcore.__all__)


def test_clear_errors(cached):
    _, roles, hidden, _, _ = cached
    with pytest.raises(ValueError, match="axes must name"):
        pool_roles(hidden, roles, axes="layer batch token")
    with pytest.raises(ValueError, match="4 axes"):
        pool_roles(hidden, roles, axes="layer token hidden")
    with pytest.raises(ValueError, match="batch 4"):
        pool_roles(hidden[:, :4], roles, axes="layer batch token hidden")
    with pytest.raises(ValueError, match="no image positions"):
        roles_from_masks([False, False, False], [True, True, False])
    with pytest.raises(ValueError, match="language_pooling"):
        pool_roles(hidden, roles, axes="layer batch token hidden", language_pooling="max")
