"""The model list says each model's family, layer count and knockout edges; the form and the API use them."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from app.redis_local import LocalRedis
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from app.ui import layout
from tests.service.fakejobs import FakeJobs


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Config-only checkpoints (no weights needed for the listing)."""
    from transformers import GemmaConfig, PaliGemmaConfig, Qwen3_5Config

    pali = tmp_path_factory.mktemp("pali")
    PaliGemmaConfig(text_config=GemmaConfig(num_hidden_layers=5, hidden_size=64, intermediate_size=96,
                                            num_attention_heads=4, num_key_value_heads=2)).save_pretrained(pali)
    hybrid = tmp_path_factory.mktemp("hybrid")
    Qwen3_5Config(text_config={"num_hidden_layers": 4, "hidden_size": 64, "layer_types": [
        "linear_attention", "linear_attention", "linear_attention", "full_attention"]}).save_pretrained(hybrid)
    return str(pali), str(hybrid)


@pytest.fixture(scope="module")
def api(folders):
    with LocalRedis() as server:
        client = redis.Redis.from_url(server.url)
        service = AnalysisService(Settings(redis_url=server.url, models=("demo", *folders)),
                                  jobs=FakeJobs(client), redis_client=client)
        yield TestClient(create_app(service=service, with_ui=False))


def test_model_list_has_family_layers_and_edges(api, folders):
    models = {m["name"]: m for m in api.get("/api/v1/models").json()}
    demo, pali, hybrid = models["demo"], models[folders[0]], models[folders[1]]
    assert (demo["family"], demo["num_layers"]) == ("LLaVA-1.5", 6)
    assert "question->image" not in demo["knockout_edges"] and len(demo["knockout_edges"]) == 4
    assert (pali["family"], pali["num_layers"], pali["attention"]) == ("PaliGemma", 5, "prefix")
    assert pali["knockout_edges"][-1] == "question->image"
    assert hybrid["linear_attention_layers"] == [0, 1, 2] and hybrid["num_layers"] == 4


def test_an_edge_the_model_lacks_is_a_422(api, folders):
    body = {"model": "demo", "knockout": {"edges": ["question->image"], "layers": [0, 1]}}
    response = api.post("/api/v1/analyses", json=body)
    assert response.status_code == 422
    assert "LLaVA-1.5 supports knockout edges" in response.json()["detail"]
    assert "not question->image" in response.json()["detail"]


def test_form_shows_family_and_disables_unsupported_edges(api, folders):
    models = api.get("/api/v1/models").json()
    assert layout.model_label(models[1]) == f"{folders[0]} (PaliGemma, 5 layers)"
    summary = layout.model_summary(models[2])
    assert "Qwen3.5" in summary and "4 decoder layers" in summary and "no knockouts on layers without attention [0, 1, 2]" in summary
    disabled = {o["value"]: o["disabled"] for o in layout.edge_options(models[0])}
    assert disabled == {"image->question": False, "image->last": False, "question->last": False,
                        "last->last": False, "question->image": True}
    assert not any(o["disabled"] for o in layout.edge_options(models[1]))
    form = layout.new_analysis_form(models, [], hosted=False, defaults={
        "model": folders[0], "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 10, "language_pooling": "mean",
        "target": "logprobs", "measure": "broja", "dims": [8, 8, 4], "gaussianize": True, "bootstrap": 0})
    assert "PaliGemma · 5 decoder layers · knockout edges:" in str(form)
