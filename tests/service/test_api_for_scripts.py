"""The REST API as scripts use it: one error shape (detail + errors with their field), refusals before
queueing with the field and a fix, Retry-After on 409, CSV rows labelled with analysis, model and tasks,
the result document's schema in OpenAPI, and Swagger UI / ReDoc served from this server (no CDN)."""

from __future__ import annotations

import csv
import io
import re

import pytest
import redis
from fastapi.testclient import TestClient

import app.docs_assets as docs_assets
from tests.service.fakejobs import NUM_LAYERS
from tests.service.test_api_routes import _fake_model_size, make_client, redis_url  # noqa: F401 - fixtures


def client(redis_url: str, hold: bool = False) -> TestClient:  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, hold=hold)


@pytest.mark.parametrize("body, field, fragment", [
    ({"n_questions": "many"}, "n_questions", "valid integer"),  # FastAPI's own validation, same shape
    ({"n_questions": 5}, "n_questions", "questions in all"),
    ({"n_questions": 1500}, "n_questions", "1,280 test questions"),
    ({"dims": [8, 8, 20]}, "dims", "13 answers"),
    ({"dataset": "gqa", "tasks": ["ChooseAttr"]}, "dataset", "PIDFLOW_GQA_ROOT"),
    ({"model": "gpt-2"}, "model", "unknown model"),
])
def test_one_error_shape_with_the_field(redis_url, monkeypatch, body, field, fragment):  # noqa: F811
    monkeypatch.delenv("PIDFLOW_GQA_ROOT", raising=False)
    response = client(redis_url).post("/api/v1/analyses", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert isinstance(answer["detail"], str) and fragment in answer["detail"]
    assert fragment in answer["errors"][0]["message"]
    assert answer["errors"][0]["field"] == field  # the request gate names every refusal's field


def test_not_ready_says_when_to_ask_again(redis_url):  # noqa: F811
    api = client(redis_url, hold=True)
    job = api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0}).json()
    response = api.get(job["result_url"])
    assert response.status_code == 409 and response.headers["retry-after"] == "5"
    assert response.json()["errors"][0]["message"] == response.json()["detail"]
    missing = api.get("/api/v1/analyses/nope")
    assert missing.status_code == 404 and isinstance(missing.json()["detail"], str)


def test_csv_rows_say_which_analysis_model_and_task(redis_url):  # noqa: F811
    api = client(redis_url)
    job = api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0, "tasks": ["color", "shape"]}).json()
    rows = list(csv.DictReader(io.StringIO(api.get(job["result_url"] + "?format=csv").text)))
    assert rows and {row["analysis_id"] for row in rows} == {job["id"]}
    assert {row["model"] for row in rows} == {"demo"} and {row["tasks"] for row in rows} == {"color+shape"}
    assert [row["layer"] for row in rows if row["run"] == "baseline"] == [str(i) for i in range(NUM_LAYERS + 1)]


def test_openapi_describes_the_result_and_every_error(redis_url):  # noqa: F811
    document = client(redis_url).get("/api/v1/openapi.json").json()
    result = document["paths"]["/api/v1/analyses/{analysis_id}/result"]["get"]["responses"]["200"]["content"]
    assert result["application/json"]["schema"] == {"$ref": "#/components/schemas/ResultDocument"}
    layer = document["components"]["schemas"]["LayerEntry"]
    assert {"layer", "redundancy", "unique_vision", "unique_language", "synergy", "total"} <= set(layer["required"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Message"), \
                        (path, method, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_swagger_ui_and_redoc_come_from_this_server(redis_url, monkeypatch):  # noqa: F811
    if not docs_assets.installed():
        pytest.skip("static/vendor/apidocs is not installed (python -m app.docs_assets could not download it)")
    api = client(redis_url)
    for page, script in (("/api/v1/docs", "swagger-ui-bundle.js"), ("/api/v1/redoc", "redoc.standalone.js")):
        html = api.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(source.startswith("/api/v1/") for source in sources), sources
        assert f"/api/v1/docs-assets/{script}" in sources
        asset = api.get(f"/api/v1/docs-assets/{script}")
        assert asset.status_code == 200 and len(asset.content) > 100_000
    assert api.get("/api/v1/docs-assets/../../pyproject.toml").status_code == 404
    monkeypatch.setattr(docs_assets, "installed", lambda *args: False)  # set-up had no network
    fallback = api.get("/api/v1/docs")
    assert fallback.status_code == 200 and "/api/v1/openapi.json" in fallback.text and "app.docs_assets" in fallback.text
