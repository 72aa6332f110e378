"""Roles, pooling, batching and hook cleanup on tiny LLaVA-1.5 / LLaVA-1.6 checkpoints loaded from disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pidcore.extract import Features, Knockout, extract, load_adapter
from pidcore.extract.pooling import PooledStates, pooling_hooks

from .conftest import ANSWERS, make_items


@pytest.fixture(scope="module")
def next_adapter(llava_next_folder):
    return load_adapter(str(llava_next_folder))


@pytest.fixture(scope="module")
def mixed_items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("mixed"), n=6, sizes=((16, 16), (32, 16), (16, 32)))


def test_adapter_classes_and_revision(adapter, next_adapter, llava_folder):
    assert type(adapter).__name__ == "LlavaAdapter"
    assert type(next_adapter).__name__ == "LlavaNextAdapter"
    assert adapter.describe()["num_layers"] == 4 and adapter.describe()["hidden_size"] == 32
    assert adapter.revision == load_adapter(str(llava_folder)).revision
    assert adapter.revision.startswith("local-") and adapter.revision != next_adapter.revision
    assert adapter.dtype == torch.float32


def test_bad_model_names_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_adapter(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither"):
        load_adapter("./no/such/folder/here")


@pytest.mark.parametrize("which", ["adapter", "next_adapter"])
def test_roles_in_padded_batch(which, request, mixed_items):
    model = request.getfixturevalue(which)
    inputs, roles = model.encode(mixed_items)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert bool((mask[:, -1] == 1).all()), "left padding: every item ends at the last column"
    assert bool((mask == 0).any()), "the batch is padded"
    for row, item in enumerate(mixed_items):
        tokens = model.tokenizer.convert_ids_to_tokens(ids[row][roles.question[row]].tolist())
        assert tokens == item.question.split()
        assert bool((ids[row][roles.image[row]] == model.image_token_id).all())
        assert int(roles.image[row].sum()) == int((ids[row] == model.image_token_id).sum())
        assert int(roles.answer_index[row]) == ids.shape[1] - 1
        assert not bool((roles.image[row] & roles.question[row]).any())
    if which == "next_adapter":  # any-resolution tiling: image token counts differ with the image shape
        assert len(set(roles.image.sum(dim=1).tolist())) > 1


def test_pooled_states_equal_manual_hidden_states(adapter, mixed_items):
    inputs, roles = adapter.encode(mixed_items)
    pooled = PooledStates(adapter.num_layers, "mean")
    pooled.start_batch(roles)
    with torch.no_grad(), pooling_hooks(adapter.decoder_layers, adapter.final_norm, pooled):
        output = adapter.model(**inputs, output_hidden_states=True, use_cache=False)
    vision, language = pooled.stacked()
    assert len(output.hidden_states) == adapter.num_layers + 1
    for layer, hidden in enumerate(output.hidden_states):
        for row in range(hidden.shape[0]):
            expected_v = hidden[row][roles.image[row]].mean(dim=0)
            expected_l = hidden[row][roles.question[row]].mean(dim=0)
            torch.testing.assert_close(vision[layer, row], expected_v, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(language[layer, row], expected_l, rtol=1e-5, atol=1e-6)
    last = PooledStates(adapter.num_layers, "last")
    last.start_batch(roles)
    with torch.no_grad(), pooling_hooks(adapter.decoder_layers, adapter.final_norm, last):
        adapter.model(**inputs, use_cache=False)
    final_question = [int(torch.nonzero(roles.question[row]).max()) for row in range(len(mixed_items))]
    expected = torch.stack([output.hidden_states[2][row, pos] for row, pos in enumerate(final_question)])
    torch.testing.assert_close(last.stacked()[1][2], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["adapter", "next_adapter"])
def test_batched_equals_one_at_a_time(which, request, mixed_items):
    model = request.getfixturevalue(which)
    batched = extract(model, mixed_items, answers=ANSWERS, batch_size=6)
    single = extract(model, mixed_items, answers=ANSWERS, batch_size=1)
    for name in ("vision", "language", "target"):
        np.testing.assert_allclose(getattr(batched, name), getattr(single, name), rtol=1e-4, atol=1e-5)
    assert list(batched.predicted) == list(single.predicted)
    assert batched.vision.shape == (model.num_layers + 1, len(mixed_items), model.hidden_size)


def test_targets_answers_and_round_trip(adapter, mixed_items):
    features = extract(adapter, mixed_items, answers=ANSWERS, batch_size=4)
    assert features.target.shape == (len(mixed_items), len(ANSWERS))
    np.testing.assert_allclose(np.exp(features.target).sum(axis=1), 1.0, rtol=1e-5)
    gold = [ANSWERS.index(item.answer) for item in mixed_items]
    np.testing.assert_allclose(features.p_correct, np.exp(features.target[np.arange(6), gold]), rtol=1e-5)
    assert list(features.predicted) == [ANSWERS[i] for i in features.target.argmax(axis=1)]
    assert list(features.correct) == [p == item.answer for p, item in zip(features.predicted, mixed_items, strict=True)]
    hidden = extract(adapter, mixed_items, answers=ANSWERS, target="hidden", batch_size=4)
    assert hidden.target.shape == (len(mixed_items), adapter.hidden_size)
    loaded = Features.from_bytes(features.to_bytes())
    assert list(loaded.questions) == [item.question for item in mixed_items]
    assert list(loaded.image_ids) == [item.image_id for item in mixed_items]
    for name in ("vision", "language", "target", "p_correct", "correct", "predicted", "qids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(features, name))
    assert loaded.meta == features.meta and loaded.meta["model"]["num_layers"] == 4
    with pytest.raises(ValueError, match="Features"):
        Features.from_bytes(b"not an archive")


def test_bad_arguments(adapter, mixed_items):
    with pytest.raises(ValueError, match="language_pooling"):
        extract(adapter, mixed_items, answers=ANSWERS, language_pooling="max")
    with pytest.raises(ValueError, match="target"):
        extract(adapter, mixed_items, answers=ANSWERS, target="logits")
    with pytest.raises(ValueError, match="at least one"):
        extract(adapter, [], answers=ANSWERS)


def test_hooks_removed_also_after_an_exception(adapter, mixed_items):
    inputs, _ = adapter.encode(mixed_items[:2])
    with torch.no_grad():
        before = adapter.model(**inputs, use_cache=False).logits
    def hook_counts():
        modules = [*adapter.decoder_layers, adapter.final_norm]
        return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]

    counts = hook_counts()
    pooled = PooledStates(adapter.num_layers)
    with pytest.raises(RuntimeError, match="boom"):
        with pooling_hooks(adapter.decoder_layers, adapter.final_norm, pooled):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with Knockout(["image->last"], (0, 3)).applied(adapter.decoder_layers, adapter.dtype):
            raise RuntimeError("boom")
    assert hook_counts() == counts
    with torch.no_grad():
        after = adapter.model(**inputs, use_cache=False).logits
    assert torch.equal(before, after)


def test_checkpoint_without_pidflow_json_uses_the_llava_prompt(tmp_path, mixed_items):
    from pidcore.demo.build import easy_vqa_vocabulary
    from pidcore.extract.adapters import LLAVA_PROMPT

    from .conftest import save_tiny_llava

    words = [*easy_vqa_vocabulary(), "user", "assistant", ":", "answer", "using", "single", "word", "or",
             "phrase", "."]
    model = load_adapter(str(save_tiny_llava(tmp_path, template=None, words=words)))
    assert model.prompt_template == LLAVA_PROMPT
    inputs, roles = model.encode(mixed_items[:3])
    for row, item in enumerate(mixed_items[:3]):
        tokens = model.tokenizer.convert_ids_to_tokens(inputs["input_ids"][row][roles.question[row]].tolist())
        assert tokens == item.question.split()
        last = inputs["input_ids"][row][roles.answer_index[row]]
        assert model.tokenizer.convert_ids_to_tokens(int(last)) == ":"
