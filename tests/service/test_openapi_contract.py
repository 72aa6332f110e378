"""The OpenAPI document says what the server does: every answer typed (a schema, or the PNG/CSV/HTML it is),
CSV never under a JSON-typed answer, short unique operation ids with tags, the bearer scheme, no folder of
the server in it, and the statuses the server gives documented where it gives them (401 and 400 of a
study, 409 of a study's report before it exists, 429 of the authentication throttle on a read, 413 of an
upload). Schemathesis (test_fuzz_api.py) checks the same from generated requests."""

from __future__ import annotations

import csv
import io
import re

import redis

from tests.service.test_api_routes import _fake_model_size, make_client, redis_url  # noqa: F401 - fixtures

STUDY = {"models": ["demo"], "tasks": ["color"], "n_questions": 120, "recipes": ["pidflow"]}
BAD = {"Authorization": "Bearer wrong"}


def fresh(redis_url, **settings):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, **settings)


def documented(document: dict, method: str, path: str, status: int) -> dict:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answers {status}, not documented: {sorted(responses)}"
    return responses[str(status)]


def test_every_operation_is_typed_tagged_and_named_shortly(redis_url, tmp_path):  # noqa: F811
    folder = tmp_path / "my-llava"  # a model folder configured on the server
    folder.mkdir()
    api = fresh(redis_url, models=("demo", str(folder)))
    document = api.get("/api/v1/openapi.json").json()
    assert str(tmp_path) not in api.get("/api/v1/openapi.json").text  # no folder of the server in it
    ids = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert re.fullmatch(r"[a-z]+(_[a-z]+){1,3}", operation["operationId"]), operation["operationId"]
            assert operation["tags"], (method, path)
            for status, answer in operation["responses"].items():
                if status.startswith("2"):
                    content = answer["content"]
                    assert content and all(media.get("schema") for media in content.values()), (method, path, status)
                    if "application/json" in content:
                        assert set(content) == {"application/json"}, (method, path, content)  # CSV has its own path
    assert len(ids) == len(set(ids)) >= 29
    assert document["components"]["securitySchemes"] == {"bearer": {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"]
        ["description"]}}
    submit = document["paths"]["/api/v1/analyses"]["post"]
    assert submit["security"] == [{"bearer": []}, {}]  # open mode: the token is optional
    model = document["components"]["schemas"]["AnalysisRequestBody"]["properties"]["model"]["anyOf"]
    assert model[0]["enum"] == ["demo"] and model[2]["description"].startswith("a model folder configured")
    features = document["paths"]["/api/v1/features"]["post"]["responses"]
    assert features["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FeaturesUpload"}
    upload = document["components"]["schemas"]["FeaturesUpload"]["properties"]
    assert upload["request"] == {"$ref": "#/components/schemas/AnalysisRequestBody"}
    hosted = fresh(redis_url, api_tokens=("alpha",)).get("/api/v1/openapi.json").json()
    assert hosted["paths"]["/api/v1/analyses"]["post"]["security"] == [{"bearer": []}]  # hosted: required


def test_csv_by_its_own_path_and_as_before(redis_url):  # noqa: F811
    api = fresh(redis_url)
    job = api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0}).json()
    by_path = api.get(job["result_url"] + ".csv")
    assert by_path.status_code == 200 and by_path.headers["content-type"].startswith("text/csv")
    assert by_path.text == api.get(job["result_url"] + "?format=csv").text  # older scripts' address kept
    rows = list(csv.DictReader(io.StringIO(by_path.text)))
    assert [row["layer"] for row in rows if row["run"] == "baseline"][:2] == ["0", "1"]
    share = api.post(f"/api/v1/analyses/{job['id']}/share").json()
    shared = api.get(share["url"] + "/result.csv").text  # the same rows, labelled with the share, not the id
    assert shared.replace(f"share:{share['share_token']}", job["id"]) == by_path.text and job["id"] not in shared


def test_study_statuses_are_documented(redis_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REDIS_URL", redis_url)  # worker.studies queues there (no worker takes it)
    hosted = fresh(redis_url, api_tokens=("alpha",), rate_limit_per_minute=1000)
    document = hosted.get("/api/v1/openapi.json").json()
    refused = hosted.post("/api/v1/studies", json=STUDY)
    assert refused.status_code == 401
    documented(document, "POST", "/api/v1/studies", 401)
    broken = hosted.post("/api/v1/studies", content=b'{"models": [', headers={"Authorization": "Bearer alpha",
                                                                                "Content-Type": "application/json"})
    assert broken.status_code == 400 and "cannot be decoded as JSON" in broken.json()["detail"]  # not 422
    documented(document, "POST", "/api/v1/studies", 400)
    unknown = hosted.post("/api/v1/studies", json={**STUDY, "nonsense": 1}, headers={"Authorization": "Bearer alpha"})
    assert unknown.status_code == 422 and "unknown field 'nonsense'" in unknown.json()["detail"]
    study = hosted.post("/api/v1/studies", json=STUDY, headers={"Authorization": "Bearer alpha"})
    assert study.status_code == 202, study.text
    for suffix in ("", ".csv", ".html"):  # queued: no report yet
        early = hosted.get(study.json()["report_url"] + suffix)
        assert early.status_code == 409, (suffix, early.text)
        documented(document, "GET", "/api/v1/studies/{study_id}/report" + suffix, 409)
    assert hosted.delete(study.json()["status_url"]).status_code == 401
    documented(document, "DELETE", "/api/v1/studies/{study_id}", 401)
    cancelled = hosted.delete(study.json()["status_url"], headers={"Authorization": "Bearer alpha"})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


def test_the_throttle_on_a_read_and_an_upload_too_large_are_documented(redis_url):  # noqa: F811
    api = fresh(redis_url, api_tokens=("alpha",), auth_failures_per_minute=3, max_upload_bytes=1000)
    document = api.get("/api/v1/openapi.json").json()
    statuses = [api.get("/api/v1/analyses", headers=BAD).status_code for _ in range(5)]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429, 429]
    documented(document, "GET", "/api/v1/analyses", 401)
    documented(document, "GET", "/api/v1/analyses", 429)
    api = fresh(redis_url, api_tokens=("alpha",), max_upload_bytes=1000)
    large = api.post("/api/v1/features", content=b"x" * 5000, headers={"Authorization": "Bearer alpha"})
    assert large.status_code == 413 and "PIDFLOW_MAX_UPLOAD_BYTES" in large.json()["detail"]
    documented(document, "POST", "/api/v1/features", 413)
