"""The five checks for every registered family, on tiny random checkpoints saved to and loaded from a folder.

(a) pidflow's forward gives the model's own logits; (b) a padded batch gives the same pooled states as one
question at a time; (c) the vision source at the decoder input is image features; (d) an image->question
knockout cuts the image from the question at the first layer of its window; (e) it leaves every earlier
layer bit-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pidcore.extract import Knockout, extract, load_adapter
from pidcore.extract.families import FAMILIES

from .conftest import ANSWERS, make_items, save_tiny_llava, save_tiny_llava_next
from .tiny_families import BUILDERS

SAVERS = {"llava": save_tiny_llava, "llava_next": save_tiny_llava_next, **BUILDERS}
CHECKS = ["own_logits", "batch_equals_single", "vision_is_image_features", "knockout_cuts_image",
          "earlier_layers_identical"]
WINDOW = (1, 2)  # decoder layers; every tiny model has 3 (Mllama's layer 1 is its cross-attention layer)


def test_every_registered_family_is_in_the_table():
    """The registry in sync: every declared family has a tiny config the checks build, and a row in
    docs/extraction.md's Families table; a family missing either fails here by name."""
    assert sorted(set(FAMILIES) - set(SAVERS)) == [], "declared without a tiny config"
    assert sorted(set(SAVERS) - set(FAMILIES)) == [], "a tiny config for no declared family"
    text = (Path(__file__).resolve().parents[2] / "docs" / "extraction.md").read_text()
    table = text[text.index("### Families"):text.index("### Model types not registered")]
    rows = {line for line in table.splitlines() if line.startswith("| ")}
    missing = [name for name in FAMILIES if not any(f"(`{name}`" in row for row in rows)]
    assert missing == [], "declared without a row in docs/extraction.md's Families table"


@pytest.fixture(scope="module")
def family_items(tmp_path_factory):
    """Three questions of different lengths over images of different shapes: a padded batch."""
    return make_items(tmp_path_factory.mktemp("family_images"), n=3, sizes=((16, 16), (32, 16), (16, 32)))


@pytest.fixture(scope="module")
def other_images(family_items, tmp_path_factory):
    """The same questions over other random images of the same shapes."""
    from dataclasses import replace

    from PIL import Image

    folder = tmp_path_factory.mktemp("family_images_b")
    rng = np.random.default_rng(7)
    items = []
    for index, item in enumerate(family_items):
        width, height = Image.open(item.image_path).size
        path = folder / f"other{index}.png"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
        items.append(replace(item, image_path=str(path)))
    return items


_cache: dict = {}


def _adapter(model_type, tmp_path_factory):
    if model_type not in _cache:
        folder = tmp_path_factory.mktemp(model_type)
        SAVERS[model_type](folder)
        _cache[model_type] = load_adapter(str(folder))
    return _cache[model_type]


def _baseline(adapter, items):
    key = ("baseline", adapter.family.model_type)
    if key not in _cache:
        _cache[key] = extract(adapter, items, answers=ANSWERS, batch_size=len(items))
    return _cache[key]


def _own_logits(adapter, item):
    """The model's own forward on the processor's outputs for one question (no pidflow positions)."""
    text, _ = adapter.prompt(item.question)
    inputs = adapter.processor_inputs([text], [item.load_image()])
    with torch.no_grad():
        return adapter.model(**inputs, use_cache=False).logits[0, -1]


def _own_image_features(adapter, inputs):
    """(image tokens, h): the model's own `get_image_features` on the processor's image inputs."""
    import inspect

    if adapter.family.model_type == "llama4":  # the projector is applied in forward, not in get_image_features
        model = adapter.model
        states = model.get_image_features(pixel_values=inputs["pixel_values"]).last_hidden_state
        return model.multi_modal_projector(states.reshape(-1, states.shape[-1]))
    model = adapter.model.model
    if not hasattr(model, "get_image_features"):  # Phi-4: the image embedding writes into the token embeddings
        ids = inputs["input_ids"]
        embedded = model.embed_tokens_extend.image_embed(
            ids, model.embed_tokens(ids), image_pixel_values=inputs["image_pixel_values"],
            image_sizes=inputs["image_sizes"], image_attention_mask=inputs["image_attention_mask"])
        return embedded[ids == adapter.image_token_id]
    accepted = inspect.signature(model.get_image_features).parameters
    output = model.get_image_features(**{k: v for k, v in inputs.items() if k in accepted and k != "input_ids"})
    features = getattr(output, "pooler_output", output)
    if isinstance(features, list | tuple):
        features = torch.cat([part.reshape(-1, part.shape[-1]) for part in features])
    return features.reshape(-1, features.shape[-1])


def _perturb_sources(adapter, roles, layer_index):
    """A pre-hook on decoder layer `layer_index` adding noise to the image at its input: the hidden states
    at image positions, or (cross-attention models) the cross-attention states."""
    generator = torch.Generator().manual_seed(1)

    def hook(module, args, kwargs):
        if adapter.family.vision_source == "cross_attention_states":
            states = kwargs["cross_attention_states"]
            kwargs = dict(kwargs, cross_attention_states=states + torch.randn(states.shape, generator=generator))
            return args, kwargs
        hidden = args[0] if args else kwargs["hidden_states"]
        noise = torch.randn(hidden.shape, generator=generator) * roles.image[:, :, None]
        if args:
            return (hidden + noise, *args[1:]), kwargs
        return args, dict(kwargs, hidden_states=hidden + noise)

    return adapter.decoder_layers[layer_index].register_forward_pre_hook(hook, with_kwargs=True)


def _layer_output(adapter, inputs, layer_index, hooks=()):
    captured = {}

    def keep(module, args, output):
        captured["out"] = (output[0] if isinstance(output, tuple) else output).detach().clone()

    handles = [adapter.decoder_layers[layer_index].register_forward_hook(keep)]
    try:
        with torch.no_grad():
            adapter.model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return captured["out"]


def _question_rows_after_layer(adapter, items, knockout, perturb):
    inputs, roles = adapter.encode(items)
    first = WINDOW[0]
    handles = [_perturb_sources(adapter, roles, first)] if perturb else []
    try:
        if knockout:
            with adapter.knockout_applied(Knockout(["image->question"], WINDOW)) as set_roles:
                set_roles(roles)
                out = _layer_output(adapter, inputs, first)
        else:
            out = _layer_output(adapter, inputs, first)
    finally:
        for handle in handles:
            handle.remove()
    rows = roles.question & ~roles.last
    return out[rows]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("model_type", list(SAVERS))
def test_family_check(model_type, check, tmp_path_factory, family_items, other_images):
    adapter = _adapter(model_type, tmp_path_factory)
    items = family_items
    if check == "own_logits":  # padded batch through pidflow vs the model's own single forward
        inputs, _ = adapter.encode(items)
        with torch.no_grad():
            ours = adapter.model(**inputs, use_cache=False).logits[:, -1]
        answer_ids = adapter.answer_token_ids(ANSWERS)
        features = _baseline(adapter, items)
        for row, item in enumerate(items):
            own = _own_logits(adapter, item)
            torch.testing.assert_close(ours[row], own, rtol=1e-4, atol=1e-5)
            expected = torch.log_softmax(own[answer_ids], dim=-1).numpy()
            np.testing.assert_allclose(features.target[row], expected, rtol=1e-4, atol=1e-5)
    elif check == "batch_equals_single":
        batched = _baseline(adapter, items)
        single = extract(adapter, items, answers=ANSWERS, batch_size=1)
        assert batched.vision.shape == (adapter.num_layers + 1, len(items), adapter.hidden_size)
        for name in ("vision", "language", "target"):
            np.testing.assert_allclose(getattr(batched, name), getattr(single, name), rtol=1e-4, atol=1e-5)
    elif check == "vision_is_image_features":
        base = _baseline(adapter, items)
        other = extract(adapter, other_images, answers=ANSWERS, batch_size=len(items))
        # the text tokens' decoder input does not depend on the image; the vision source does
        np.testing.assert_array_equal(other.language[0], base.language[0])
        assert np.abs(other.vision[0] - base.vision[0]).max(axis=1).min() > 1e-4
        inputs, roles = adapter.encode(items)
        if adapter.family.vision_source == "image_positions":
            # the decoder input's image rows are the model's own image features, in order
            states = {}

            def keep_input(module, args, kwargs):
                states["h"] = (args[0] if args else kwargs["hidden_states"]).detach()

            handle = adapter.decoder_layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)
            try:
                with torch.no_grad():
                    adapter.model(**inputs, use_cache=False)
                    torch.testing.assert_close(states["h"][roles.image], _own_image_features(adapter, inputs),
                                               rtol=1e-5, atol=1e-6)
            finally:
                handle.remove()
            placeholder = adapter.model.get_input_embeddings()(torch.tensor([adapter.image_token_id]))[0]
            assert float((states["h"][roles.image] - placeholder).abs().max(dim=1).values.min()) > 1e-3
        else:  # cross-attention: the projected states, mean over the image's valid tiles, at every depth
            model = adapter.model.model
            with torch.no_grad():
                vision = model.vision_model(pixel_values=inputs["pixel_values"], aspect_ratio_ids=inputs[
                    "aspect_ratio_ids"], aspect_ratio_mask=inputs["aspect_ratio_mask"]).last_hidden_state
                projected = model.multi_modal_projector(vision)  # (b, images, tiles, patches, h)
            tiles = inputs["aspect_ratio_mask"][:, 0].to(torch.float32)  # (b, tiles)
            per_tile = projected.reshape(len(items), tiles.shape[1], -1, adapter.hidden_size).mean(dim=2)
            expected = (per_tile * tiles[:, :, None]).sum(dim=1) / tiles.sum(dim=1, keepdim=True)
            np.testing.assert_allclose(base.vision[0], expected.numpy(), rtol=1e-5, atol=1e-6)
            assert np.array_equal(base.vision[0], base.vision[-1])
    elif check == "knockout_cuts_image":
        clean = _question_rows_after_layer(adapter, items, knockout=True, perturb=False)
        noisy = _question_rows_after_layer(adapter, items, knockout=True, perturb=True)
        torch.testing.assert_close(noisy, clean, rtol=0, atol=1e-6)
        open_clean = _question_rows_after_layer(adapter, items, knockout=False, perturb=False)
        open_noisy = _question_rows_after_layer(adapter, items, knockout=False, perturb=True)
        assert float((open_noisy - open_clean).abs().max()) > 1e-3, "without the knockout the image reaches them"
    elif check == "earlier_layers_identical":
        base = _baseline(adapter, items)
        knocked = extract(adapter, items, answers=ANSWERS, batch_size=len(items),
                          knockout=Knockout(["image->question"], WINDOW))
        for layer in range(WINDOW[0] + 1):  # pooled layer i = output of decoder layer i-1
            np.testing.assert_array_equal(knocked.language[layer], base.language[layer])
            np.testing.assert_array_equal(knocked.vision[layer], base.vision[layer])
        assert np.abs(knocked.language[WINDOW[0] + 1] - base.language[WINDOW[0] + 1]).max() > 1e-4


def test_family_and_template_come_from_the_config(tmp_path_factory):
    for model_type in ("qwen2_vl", "mllama", "paligemma"):
        adapter = _adapter(model_type, tmp_path_factory)
        assert adapter.family is FAMILIES[model_type] and adapter.prompt_template == FAMILIES[model_type].prompt
    described = _adapter("mllama", tmp_path_factory).describe()
    assert described["family"] == "Llama 3.2 Vision (Mllama)" and described["num_layers"] == 3
    assert described["vision_source"] == "cross_attention_states" and described["cross_attention_layers"] == [1]
    assert "question->image" in _adapter("paligemma", tmp_path_factory).describe()["knockout_edges"]
    assert _adapter("qwen3_5", tmp_path_factory).describe()["linear_attention_layers"] == [0]


def test_unsupported_and_unknown_families_are_clear(monkeypatch):
    from pidcore.extract import families
    from pidcore.extract.families import family_for

    monkeypatch.setitem(families.UNSUPPORTED, "llama4", "its forward fails in transformers 5.99")
    with pytest.raises(ValueError, match="llama4.*not supported: its forward fails"):
        family_for("llama4")
    with pytest.raises(ValueError, match="unsupported model type 'bert'.*qwen2_5_vl"):
        family_for("bert")


@pytest.mark.parametrize(("model_type", "kind"), [("qwen3_5", "Qwen3_5GatedDeltaNet"),
                                                  ("qwen3_5_moe", "Qwen3_5MoeGatedDeltaNet"), ("lfm2_vl", "Lfm2ShortConv")])
def test_layers_without_attention_refuse_knockouts_by_what_they_are(model_type, kind, tmp_path_factory, family_items):
    """A recurrent linear-attention layer (Qwen3.5) or a short convolution (LFM2) holds no attention a mask
    can edit: a window over it is refused, naming the layer and its kind, before any forward."""
    adapter = _adapter(model_type, tmp_path_factory)
    assert adapter.unmaskable_layers == {0: kind}
    pattern = rf"without attention.*: 0 \({kind}\);.*attention layers only: \[1, 2\]"
    with pytest.raises(ValueError, match=pattern):
        extract(adapter, family_items, answers=ANSWERS, knockout=Knockout(["image->question"], (0, 2)))
    with pytest.raises(ValueError, match=pattern):
        adapter.check_knockout(Knockout(["image->last"], (0, 0)))


def test_declared_layer_kinds_and_final_norm_match_the_loaded_models(tmp_path_factory):
    """Every family: the layers found without attention on the loaded model are the ones its config's
    layer_types declare (describe_config, no weights), and the final norm is the decoder's last module."""
    import json
    from pathlib import Path

    from pidcore.extract.families import describe_config

    for model_type in SAVERS:
        adapter = _adapter(model_type, tmp_path_factory)
        config = json.loads((Path(adapter.name) / "config.json").read_text())
        described = describe_config(config)
        assert described["family"] == adapter.family.label
        assert described["linear_attention_layers"] == list(adapter.unmaskable_layers), model_type
        assert adapter.describe()["linear_attention_layers"] == list(adapter.unmaskable_layers)
        assert adapter.final_norm is not None and "norm" in type(adapter.final_norm).__name__.lower(), model_type
    lfm2 = _adapter("lfm2_vl", tmp_path_factory)
    assert lfm2.final_norm is lfm2.model.model.language_model.embedding_norm
    assert describe_config(lfm2.model.config.to_dict())["unmaskable_layers"] == [{"layer": 0, "kind": "conv"}]
    assert _adapter("mllama", tmp_path_factory).unmaskable_layers == {}  # its cross-attention layer is maskable


def test_lfm2_images_are_tiled_with_a_thumbnail(tmp_path_factory):
    """pidflow's PIL image processor for LFM2-VL: a 16 x 16 image is one tile of 4 tokens; a 32 x 16 one is
    too large (tolerance 1.0) and becomes 2 tiles of 16 x 16 plus an 8 x 16 thumbnail: 4 + 4 + 2 tokens."""
    from PIL import Image

    adapter = _adapter("lfm2_vl", tmp_path_factory)
    image_id = adapter.image_token_id
    for size, shapes, tokens in (((16, 16), [[4, 4]], 4), ((32, 16), [[4, 4], [4, 4], [2, 4]], 10)):
        text, _ = adapter.prompt("what shape is it")
        batch = adapter.processor_inputs([text], [Image.new("RGB", size, (200, 30, 30))])
        assert batch["spatial_shapes"].tolist() == shapes
        assert batch["pixel_values"].shape == (len(shapes), 16, 4 * 4 * 3)
        assert batch["pixel_attention_mask"].sum(dim=1).tolist() == [h * w for h, w in shapes]
        assert int((batch["input_ids"] == image_id).sum()) == tokens


def test_attention_without_an_editable_mask_is_refused(tmp_path_factory, family_items, monkeypatch):
    from pidcore.extract.adapters import VLMAdapter

    adapter = _adapter("qwen2_vl", tmp_path_factory)
    monkeypatch.setattr(VLMAdapter, "attention_implementation", property(lambda self: "flash_attention_2"))
    with pytest.raises(ValueError, match="flash_attention_2.*'eager' or 'sdpa'"):
        extract(adapter, family_items, answers=ANSWERS, knockout=Knockout(["image->last"], WINDOW))
    extract(adapter, family_items[:1], answers=ANSWERS)  # extraction alone needs no mask edits


def test_question_to_image_edge_only_in_prefix_lm(tmp_path_factory, family_items):
    with pytest.raises(ValueError, match="question->image exists only in prefix-LM"):
        extract(_adapter("llava", tmp_path_factory), family_items, answers=ANSWERS,
                knockout=Knockout(["question->image"], WINDOW))
    adapter = _adapter("paligemma", tmp_path_factory)
    inputs, roles = adapter.encode(family_items)
    generator = torch.Generator().manual_seed(2)

    def perturb_question(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        noisy = hidden + torch.randn(hidden.shape, generator=generator) * (roles.question & ~roles.last)[:, :, None]
        return ((noisy, *args[1:]), kwargs) if args else (args, dict(kwargs, hidden_states=noisy))

    def image_rows(knockout, perturb):
        handles = [adapter.decoder_layers[WINDOW[0]].register_forward_pre_hook(perturb_question, with_kwargs=True)] \
            if perturb else []
        try:
            if knockout:
                with adapter.knockout_applied(Knockout(["question->image"], WINDOW)) as set_roles:
                    set_roles(roles)
                    out = _layer_output(adapter, inputs, WINDOW[0])
            else:
                out = _layer_output(adapter, inputs, WINDOW[0])
        finally:
            for handle in handles:
                handle.remove()
        return out[roles.image]

    # prefix-LM: without the knockout the image tokens read the question; with it they do not
    assert float((image_rows(False, True) - image_rows(False, False)).abs().max()) > 1e-3
    torch.testing.assert_close(image_rows(True, True), image_rows(True, False), rtol=0, atol=1e-6)


@pytest.mark.parametrize("model_type", list(SAVERS))
def test_knockout_alone_batched_and_eager_agree(model_type, tmp_path_factory, family_items):
    """One unpadded question (sdpa may pass no mask), a padded batch, and eager attention give the same
    knocked-out states."""
    adapter = _adapter(model_type, tmp_path_factory)
    edges = ["image->question", "question->last", *(["question->image"] if model_type == "paligemma" else [])]
    knockout = Knockout(edges, WINDOW)
    batched = extract(adapter, family_items, answers=ANSWERS, batch_size=3, knockout=knockout)
    single = extract(adapter, family_items, answers=ANSWERS, batch_size=1, knockout=knockout)
    eager = load_adapter(adapter.name, attn_implementation="eager")
    assert eager.attention_implementation == "eager"
    by_eager = extract(eager, family_items, answers=ANSWERS, batch_size=3, knockout=knockout)
    for other in (single, by_eager):
        for name in ("vision", "language", "target"):
            np.testing.assert_allclose(getattr(other, name), getattr(batched, name), rtol=1e-4, atol=1e-5)
    assert np.abs(batched.language[-1] - _baseline(adapter, family_items).language[-1]).max() > 1e-4


def test_a_hub_id_resolves_by_model_type_offline(tmp_path):
    """A Hugging Face id from the local cache (no network) gets its family, template and commit hash."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--tiny--qwen2-vl" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    BUILDERS["qwen2_vl"](tmp_path / "built")
    for path in (tmp_path / "built").iterdir():
        shutil.copy(path, snapshot / path.name)
    (tmp_path / "hub" / "models--tiny--qwen2-vl" / "refs").mkdir()
    (tmp_path / "hub" / "models--tiny--qwen2-vl" / "refs" / "main").write_text(commit)
    code = ("import json; from pidcore.extract import load_adapter; a = load_adapter('tiny/qwen2-vl'); "
            "print(json.dumps([a.family.model_type, a.prompt_template, a.revision, a.name]))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    model_type, template, revision, name = json.loads(done.stdout.strip().splitlines()[-1])
    assert (model_type, template, revision, name) == ("qwen2_vl", FAMILIES["qwen2_vl"].prompt, commit, "tiny/qwen2-vl")


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_logits_are_the_models_own_and_2d_positions_would_break_them(model_type, tmp_path_factory,
                                                                         family_items):
    """M-RoPE: pidflow leaves positions to the model (equal logits); its 2-D left-padding positions, as
    used for LLaVA, would give other logits."""
    adapter = _adapter(model_type, tmp_path_factory)
    inputs, _ = adapter.encode(family_items)
    assert "position_ids" not in inputs
    with torch.no_grad():
        ours = adapter.model(**inputs, use_cache=False).logits[:, -1]
        flat = (inputs["attention_mask"].cumsum(dim=1) - 1).clamp_min(0)
        wrong = adapter.model(**inputs, position_ids=flat, use_cache=False).logits[:, -1]
    for row, item in enumerate(family_items):
        own = _own_logits(adapter, item)
        torch.testing.assert_close(ours[row], own, rtol=1e-4, atol=1e-5)
        assert float((wrong[row] - own).abs().max()) > 5e-5  # 5x the tolerance above; fixed seeds


def test_unregistered_image_text_types_are_listed():
    """Every model type of the installed transformers' image-text-to-text mapping is registered or listed in
    docs/extraction.md ("Model types not registered") with a reason, and nothing listed is registered."""
    import re
    from pathlib import Path

    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    text = (Path(__file__).resolve().parents[2] / "docs" / "extraction.md").read_text()
    section = text.split("### Model types not registered", 1)[1].split("\n### ", 1)[0]
    listed = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.MULTILINE))
    listed.pop("model_type")  # the table's header
    assert set(listed) == set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES) - set(FAMILIES)
    assert all(len(reason) > 10 for reason in listed.values())
