"""The OpenAPI document says what the uploads do now (issue 19): the answer's `id` is the token's own handle
in hosted mode (the sha256 in open mode), `sha256` and `stored_bytes` are in it, GET/DELETE take the handle,
POST /features documents the 401 before the body and the 507 of the per-token quota, POST /analyses the 507
of the feature folder's bound. Real answers (hosted and open) are checked against the published schema."""

from __future__ import annotations

import re

import redis

from app.api.schemas import FeaturesSummary, FeaturesUpload
from tests.byo.test_upload_owners import _as, _npz
from tests.service.test_api_routes import _fake_model_size, make_client, redis_url  # noqa: F401 - fixtures


def _responses(document: dict, method: str, path: str) -> dict:
    return document["paths"][path][method]["responses"]


def test_upload_answers_match_the_published_schema_hosted_and_open(redis_url, monkeypatch):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    size = 3 * 40 * (4 + 3) * 4  # one file's layer states, float32
    monkeypatch.setenv("PIDFLOW_UPLOAD_QUOTA_GB", str(1.5 * size / 1024**3))
    api = make_client(redis_url, api_tokens=("alpha", "beta"))
    document = api.get("/api/v1/openapi.json").json()
    upload = document["components"]["schemas"]["FeaturesUpload"]
    assert {"id", "sha256"} <= set(upload["required"]) and upload["properties"]["stored_bytes"]["anyOf"][0] == {
        "type": "integer", "minimum": 0}
    assert "handle" in upload["properties"]["id"]["description"]
    posted = _responses(document, "post", "/api/v1/features")
    assert "before the body is read" in posted["401"]["description"]
    assert "PIDFLOW_UPLOAD_QUOTA_GB" in posted["507"]["description"] and "PIDFLOW_FEATURE_MAX_GB" in \
        posted["507"]["description"]
    assert "PIDFLOW_FEATURE_MAX_GB" in _responses(document, "post", "/api/v1/analyses")["507"]["description"]
    for method in ("get", "delete"):
        operation = document["paths"]["/api/v1/features/{features_id}"][method]
        (parameter,) = [p for p in operation["parameters"] if p["name"] == "features_id"]
        assert "handle" in parameter["description"] and "404" in operation["responses"]
    assert "another token's handle" in _responses(document, "delete", "/api/v1/features/{features_id}")["403"][
        "description"]
    assert upload["properties"]["id"]["pattern"] == "^([0-9a-f]{64}|u[0-9a-f]{32})$"

    def check(answer: dict, model=FeaturesUpload) -> None:  # the model the published schema is made from
        model.model_validate(answer)
        assert set(answer) <= set(document["components"]["schemas"][model.__name__]["properties"]), answer.keys()

    first = api.post("/api/v1/features", content=_npz(1), headers=_as("alpha"))
    assert first.status_code == 201
    body = first.json()
    check(body)
    assert re.fullmatch(r"u[0-9a-f]{32}", body["id"]) and body["stored_bytes"] == size
    theirs = api.post("/api/v1/features", content=_npz(1), headers=_as("beta"))
    assert theirs.status_code == 200 and theirs.json()["id"] != body["id"]
    check(theirs.json())
    summary = api.get(f"/api/v1/features/{body['id']}")
    check(summary.json(), FeaturesSummary)
    assert summary.json()["id"] == body["id"] and summary.json()["sha256"] == body["sha256"]
    refused = api.post("/api/v1/features", content=_npz(2), headers=_as("alpha"))  # past its quota
    assert refused.status_code == 507 and "PIDFLOW_UPLOAD_QUOTA_GB" in refused.json()["detail"]
    tokenless = api.post("/api/v1/features", content=_npz(2), headers={"content-type": "application/octet-stream"})
    assert tokenless.status_code == 401
    assert api.delete(f"/api/v1/features/{body['id']}", headers=_as("beta")).status_code == 403
    assert api.delete(f"/api/v1/features/{body['id']}", headers=_as("alpha")).json() == {"id": body["id"],
                                                                                          "deleted": True}
    assert api.get(f"/api/v1/features/{body['id']}").status_code == 404

    redis.Redis.from_url(redis_url).flushdb()
    open_api = make_client(redis_url)
    plain = open_api.post("/api/v1/features", content=_npz(3), headers={"content-type": "application/octet-stream"})
    assert plain.status_code == 201 and plain.json()["id"] == plain.json()["sha256"]
    check(plain.json())
