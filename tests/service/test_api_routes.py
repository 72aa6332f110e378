"""REST routes against a real (private) Redis, with a stand-in for worker.jobs: status codes, result
shapes, CSV, question views, validation messages, body limits, hosted-mode auth, share links, 503s."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
import redis
from fastapi.testclient import TestClient

import app.service as service_module
from app.redis_local import LocalRedis, free_port
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import FAILING_SEED, NUM_LAYERS, FakeJobs

PARTS = ("redundancy", "unique_vision", "unique_language", "synergy")
real_num_decoder_layers = service_module._num_decoder_layers  # the tests below patch it to NUM_LAYERS


@pytest.fixture(scope="module")
def redis_url():
    with LocalRedis() as server:
        yield server.url


@pytest.fixture(autouse=True)
def _fake_model_size(monkeypatch):
    monkeypatch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)


def make_client(redis_url: str, hold: bool = False, **settings) -> TestClient:
    cfg = Settings(redis_url=redis_url, **settings)
    client = redis.Redis.from_url(redis_url)
    service = AnalysisService(cfg, jobs=FakeJobs(client, hold=hold), redis_client=client)
    return TestClient(create_app(service=service, with_ui=False))


@pytest.fixture
def api(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, max_questions=500)


def test_submit_then_cached_then_result(api):
    first = api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0})
    assert first.status_code == 202
    job = first.json()
    assert job["status_url"] == f"/api/v1/analyses/{job['id']}"
    assert first.headers["location"] == job["status_url"]
    again = api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0})
    assert again.status_code == 200 and again.json()["id"] == job["id"] and again.json()["cached"]
    status = api.get(job["status_url"]).json()
    assert status["state"] == "succeeded" and status["progress"] == 1.0
    doc = api.get(job["result_url"]).json()
    layers = doc["runs"]["baseline"]["layers"]
    assert [layer["layer"] for layer in layers] == list(range(NUM_LAYERS + 1))
    for layer in layers:
        assert sum(layer[p] for p in PARTS) == pytest.approx(layer["total"])


def test_csv_has_one_row_per_run_and_layer(api):
    body = {"knockout": {"edges": ["image->last"], "layers": [1, 3]}}
    job = api.post("/api/v1/analyses", json=body).json()
    response = api.get(job["result_url"], params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    doc = api.get(job["result_url"]).json()
    deltas = len((doc.get("effects") or {}).get("per_layer") or [])
    assert len(rows) == 2 * (NUM_LAYERS + 1) + deltas
    assert {r["run"] for r in rows} == {"baseline", "knockout"} | ({"delta"} if deltas else set())
    ko = [r for r in rows if r["run"] == "knockout"]
    assert float(ko[2]["redundancy"]) == pytest.approx(doc["runs"]["knockout"]["layers"][2]["redundancy"])
    assert {(r["knockout_edges"], r["knockout_window"]) for r in ko} == {("image->last", "1-3")}
    assert {(r["knockout_edges"], r["knockout_window"]) for r in rows if r["run"] == "baseline"} == {("", "")}


def test_question_view(api):
    body = {"knockout": {"edges": ["image->question"], "layers": [0, 5]}}
    job = api.post("/api/v1/analyses", json=body).json()
    view = api.get(f"/api/v1/analyses/{job['id']}/questions/easy-vqa.test.3").json()
    assert view["image_url"] == "/api/v1/images/easy-vqa.test.3"
    assert view["baseline"]["predicted"] == "red" and view["knockout"]["p_correct"] == 0.2
    assert len(view["baseline"]["layers"]) == NUM_LAYERS + 1
    layer4 = view["baseline"]["layers"][4]
    assert [layer4[p] for p in PARTS] == pytest.approx([0.4, 0.03, 0.0, 0.02])
    assert layer4["total"] == pytest.approx(0.45)
    missing = api.get(f"/api/v1/analyses/{job['id']}/questions/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_unknown_ids_are_404(api):
    for path in ("/api/v1/analyses/zzz", "/api/v1/analyses/zzz/result", "/api/v1/shared/zzz",
                 "/api/v1/images/no-such-image"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]
    assert api.delete("/api/v1/analyses/zzz").status_code == 404


def test_running_job_result_is_409(redis_url):
    api = make_client(redis_url, hold=True)
    job = api.post("/api/v1/analyses", json={"seed": 99}).json()
    assert job["state"] == "queued"
    response = api.get(job["result_url"])
    assert response.status_code == 409 and "queued" in response.json()["detail"]


def test_delete_removes_the_result(api):
    job = api.post("/api/v1/analyses", json={"seed": 5}).json()
    assert api.get(job["result_url"]).status_code == 200  # now in the in-process cache too
    assert api.delete(job["status_url"]).json() == {"id": job["id"], "deleted": True}
    assert api.get(job["result_url"]).status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "gpt-2"}, "unknown model 'gpt-2'"),
        ({"n_questions": 501}, "limit of 500"),
        ({"dims": [16, 16]}, "dims"),
        ({"dims": [16, 0, 8]}, "dims"),
        ({"knockout": {"edges": ["image->last"], "layers": [2, 6]}}, "outside the model"),
        ({"knockout": {"edges": ["image->last"], "layers": [4, 2]}}, "not a window"),
        ({"knockout": {"edges": ["sideways"], "layers": [0, 1]}}, "edges"),
        ({"measure": "banana"}, "measure"),
        ({"colour": "red"}, "colour"),
        ({"n_questions": 13, "dims": [2, 2, 1], "bootstrap": 0}, "job layer refuses n_questions=13"),
        ({"n_questions": 13, "bootstrap": 0}, "need at least 42 questions in all"),  # refused up front, before the job layer
        ({"n_questions": 13}, "bootstrap resamples need at least 110 questions in all"),  # default 200 rounds
        ({"n_questions": 500, "tasks": ["color"]}, None),
    ],
)
def test_validation_messages(api, body, fragment):
    response = api.post("/api/v1/analyses", json=body)
    if fragment is None:
        assert response.status_code in (200, 202), response.text
        return
    assert response.status_code == 422
    assert fragment in str(response.json()["detail"])


def test_malformed_and_oversized_bodies(redis_url):
    api = make_client(redis_url, max_body_bytes=2000)
    for path in ("/api/v1/analyses", "/api/v1/studies"):  # not JSON at all: 400, as the OpenAPI says
        bad = api.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["detail"].startswith("the body cannot be decoded as JSON: ")
    big = api.post("/api/v1/analyses", json={"tasks": ["color"] * 1000})
    assert big.status_code == 413 and "2000 bytes" in big.json()["detail"]

    def chunks():  # no content-length: the limit applies to the streamed body
        for _ in range(10):
            yield b" " * 500

    streamed = api.post("/api/v1/analyses", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_models_and_openapi(redis_url):
    api = make_client(redis_url, models=("demo", "llava-hf/llava-1.5-7b-hf"))
    assert [m["name"] for m in api.get("/api/v1/models").json()] == ["demo", "llava-hf/llava-1.5-7b-hf"]
    schema = api.get("/api/v1/openapi.json").json()
    assert "/api/v1/analyses/{analysis_id}/result" in schema["paths"]
    assert api.get("/api/v1/docs").status_code == 200


def test_hosted_mode_tokens_rate_limits_and_shares(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha", "beta"), rate_limit_per_minute=4)
    assert api.post("/api/v1/analyses", json={}).status_code == 401
    wrong = api.post("/api/v1/analyses", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    alpha = {"Authorization": "Bearer alpha"}
    job = api.post("/api/v1/analyses", json={"seed": 1}, headers=alpha).json()
    assert api.get(job["result_url"]).status_code == 200  # reads stay open
    share = api.post(f"/api/v1/analyses/{job['id']}/share", headers=alpha)
    assert share.status_code == 201
    token = share.json()["share_token"]
    assert share.json()["url"].endswith(f"/api/v1/shared/{token}")
    shared = api.get(f"/api/v1/shared/{token}/result").json()
    assert shared == api.get(job["result_url"]).json()
    assert api.get(f"/api/v1/shared/{token}/questions/easy-vqa.test.0").status_code == 200
    # a share token is no write credential, and shared paths take no writes
    assert api.delete(job["status_url"], headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert api.delete(f"/api/v1/shared/{token}").status_code == 405
    assert api.post(f"/api/v1/shared/{token}/result", json={}).status_code == 405
    # only the submitting token may delete
    assert api.delete(job["status_url"], headers={"Authorization": "Bearer beta"}).status_code == 403
    # alpha has used 2 of 4 writes this minute
    codes = [api.post("/api/v1/analyses", json={"seed": s}, headers=alpha).status_code for s in (2, 3, 4)]
    assert codes[:2] == [202, 202] and codes[2] == 429
    limited = api.post("/api/v1/analyses", json={"seed": 9}, headers=alpha)
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    assert api.post("/api/v1/analyses", json={"seed": 9}, headers={"Authorization": "Bearer beta"}).status_code == 202


def test_redis_down_is_503(redis_url):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    api = make_client(dead)
    for response in (api.post("/api/v1/analyses", json={}), api.get("/api/v1/analyses/abc")):
        assert response.status_code == 503
        assert "not reachable" in response.json()["detail"]
    health = api.get("/api/v1/healthz")
    assert health.status_code == 503 and health.json()["redis"] is False


def test_cors_origins(redis_url):
    api = make_client(redis_url, cors_origins=("https://lab.example",))
    allowed = api.get("/api/v1/models", headers={"Origin": "https://lab.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example"
    other = api.get("/api/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_delete_by_another_process_shows_after_the_recheck_window(redis_url):
    reader, deleter = make_client(redis_url), make_client(redis_url)
    reader.app.state.service.recheck_s = 0.3
    job = reader.post("/api/v1/analyses", json={"seed": 11}).json()
    assert reader.get(job["result_url"]).status_code == 200
    assert deleter.delete(job["status_url"]).status_code == 200
    time.sleep(0.35)
    assert reader.get(job["result_url"]).status_code == 404


def test_one_get_rechecks_a_stale_result_while_the_others_are_served_from_memory(redis_url):
    service = make_client(redis_url).app.state.service
    service.recheck_s = 0.2
    job_id = service.submit({"seed": 12})["id"]
    assert service.fresh_result(job_id) is None  # never served: not in memory
    cached = service.cached_result(job_id)
    assert service.fresh_result(job_id) is cached
    time.sleep(0.25)
    assert service.fresh_result(job_id) is None  # the first GET after the window re-checks Redis
    assert [service.fresh_result(job_id) for _ in range(3)] == [cached] * 3  # the others meanwhile do not
    assert service.cached_result(job_id) is cached and service.fresh_result(job_id) is cached  # re-checked
    time.sleep(0.45)
    assert service.fresh_result(job_id) is None  # claimed again, and older than 2 x recheck_s:
    assert service.fresh_result(job_id) is None  # nobody gets the copy without a re-check
    service.jobs.delete(job_id)  # deleted behind this process's back
    with pytest.raises(KeyError):
        service.cached_result(job_id)
    assert service.fresh_result(job_id) is None and service._documents.get(job_id) is None


def test_redis_restart_gives_503_then_recovers():
    local = LocalRedis().start()
    port = local.port
    api = make_client(local.url)
    job = api.post("/api/v1/analyses", json={"seed": 21}).json()
    local.stop()
    down = api.get(job["status_url"])
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    again = LocalRedis(port=port).start()  # a fresh, empty Redis on the same address
    try:
        assert api.get("/api/v1/healthz").json()["redis"] is True
        assert api.get(job["status_url"]).status_code == 404  # its data died with the old server
        assert api.post("/api/v1/analyses", json={"seed": 21}).status_code == 202
    finally:
        again.stop()


def test_dashboard_is_mounted_after_the_api(redis_url, monkeypatch):
    import sys
    import types

    import dash
    from dash import html

    seen = {}

    def create_dash_app(service, requests_pathname_prefix="/"):
        seen["service"], seen["prefix"] = service, requests_pathname_prefix
        board = dash.Dash(__name__, requests_pathname_prefix=requests_pathname_prefix)
        board.layout = html.Div("stub dashboard", id="stub")
        return board

    monkeypatch.setitem(sys.modules, "app.ui", types.SimpleNamespace(create_dash_app=create_dash_app))
    cfg = Settings(redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    service = AnalysisService(cfg, jobs=FakeJobs(client), redis_client=client)
    api = TestClient(create_app(service=service))
    assert seen == {"service": service, "prefix": "/"}
    page = api.get("/")
    assert page.status_code == 200 and "_dash-config" in page.text
    assert api.get("/_dash-layout").json()["props"]["id"] == "stub"
    assert api.get("/api/v1/models").json()[0]["name"] == "demo"
    # /api/ paths no route takes answer JSON, not the dashboard's page
    head = api.head("/api/v1/models")
    assert head.status_code == 405 and head.headers["allow"] == "GET" and "_dash-config" not in head.text
    put = api.put("/api/v1/analyses/abc")
    assert put.status_code == 405 and put.headers["allow"] == "GET, DELETE"
    assert put.json()["detail"] == "PUT is not allowed on /api/v1/analyses/abc; use GET, DELETE"
    missing = api.get("/api/v2/whatever")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no API endpoint /api/v2/whatever (see /api/v1/docs)"


def test_result_etag_allows_conditional_gets(api):
    job = api.post("/api/v1/analyses", json={"seed": 31}).json()
    first = api.get(job["result_url"])
    etag = first.headers["etag"]
    assert api.get(job["result_url"]).headers["etag"] == etag
    unchanged = api.get(job["result_url"], headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert api.get(job["result_url"], headers={"If-None-Match": '"other"'}).status_code == 200
    status = api.get(job["status_url"]).json()
    assert {"created_at", "updated_at", "cached"} <= set(status)


@pytest.mark.parametrize("warm", [False, True], ids=["first-get", "in-memory"])
def test_result_is_gzipped_when_accepted_and_conditional_on_either_etag(redis_url, warm):
    api = make_client(redis_url)
    job = api.post("/api/v1/analyses", json={"seed": 32}).json()
    url = job["result_url"]
    if warm:
        api.get(url)
    plain = api.get(url, headers={"Accept-Encoding": "identity"})
    zipped = api.get(url, headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.5"})
    assert "content-encoding" not in plain.headers and zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.json() == plain.json() and plain.content == json.dumps(plain.json(), separators=(",", ":")).encode()
    assert zipped.num_bytes_downloaded < plain.num_bytes_downloaded / 2  # gzip bytes on the wire
    assert plain.headers["etag"] != zipped.headers["etag"]
    for etag in (plain.headers["etag"], "W/" + zipped.headers["etag"], f'"x", {zipped.headers["etag"]}', "*"):
        again = api.get(url, headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
        assert again.status_code == 304 and again.headers["etag"] == zipped.headers["etag"], etag
    shared = api.post(f"{url.rsplit('/', 1)[0]}/share").json()["url"].split("/api/v1")[1]
    assert api.get(f"/api/v1{shared}/result", headers={"Accept-Encoding": "gzip"}).headers["content-encoding"] == "gzip"
    assert api.delete(url.rsplit("/", 1)[0]).status_code == 200
    assert api.get(url).status_code == 404  # the in-memory copy does not outlive its job


def test_in_memory_fast_path_keeps_cors_and_leaves_other_requests_to_the_routes(redis_url):
    api = make_client(redis_url, cors_origins=("https://x.example",))
    url = api.post("/api/v1/analyses", json={"seed": 33}).json()["result_url"]
    service, routed = api.app.state.service, []
    real_cached_result = service.cached_result
    service.cached_result = lambda analysis_id: routed.append(analysis_id) or real_cached_result(analysis_id)
    first = api.get(url, headers={"Origin": "https://x.example"})  # through the route: fills the cache
    again = api.get(url, headers={"Origin": "https://x.example"})  # answered by CachedResultFastPath
    assert len(routed) == 1
    assert again.headers["access-control-allow-origin"] == first.headers["access-control-allow-origin"]
    assert (again.status_code, again.content, again.headers["etag"]) == (200, first.content, first.headers["etag"])
    assert api.get(url, params={"format": "csv"}).headers["content-type"].startswith("text/csv")
    assert api.get(url.replace("/result", "/x/result")).status_code == 404
    assert api.get(url, params={"format": "xml"}).status_code == 422


def test_accept_encoding_parsing():
    from app.api.conditional import accepts_gzip, etag_matches

    for header, expected in (("gzip", True), ("GZIP;q=0.2", True), ("deflate, gzip;q=0", False),
                             ("*", True), ("*;q=0", False), ("gzip;q=0, *", False), ("x-gzip", True),
                             ("br, deflate", False), ("", False), (None, False), ("gzip;q=bad", False)):
        assert accepts_gzip(header) is expected, header
    assert etag_matches('W/"a", "b"', ('"a"',)) and not etag_matches('"c"', ('"a"', '"b"'))
    assert not etag_matches(None, ('"a"',)) and etag_matches("*", ('"a"',))


def test_default_request_is_the_api_default():
    from app.api.schemas import AnalysisRequestBody
    from app.service import DEFAULT_REQUEST

    assert AnalysisRequestBody().model_dump() == DEFAULT_REQUEST


def test_settings_from_environment():
    cfg = Settings.from_env({"REDIS_URL": "redis://r:1/2", "PIDFLOW_MODELS": " llava-hf/llava-1.5-7b-hf, demo,",
                             "PIDFLOW_API_TOKENS": "a,b", "PIDFLOW_MAX_QUESTIONS": "50",
                             "PIDFLOW_CORS_ORIGINS": "https://x.example", "PIDFLOW_PUBLIC_URL": "https://p.example/"})
    assert cfg.redis_url == "redis://r:1/2" and cfg.models == ("demo", "llava-hf/llava-1.5-7b-hf")
    assert cfg.hosted and cfg.api_tokens == ("a", "b") and cfg.max_questions == 50
    assert cfg.cors_origins == ("https://x.example",) and cfg.public_url == "https://p.example"
    assert not Settings.from_env({}).hosted
    with pytest.raises(ValueError, match="PIDFLOW_MAX_QUESTIONS must be an integer"):
        Settings.from_env({"PIDFLOW_MAX_QUESTIONS": "many"})
    with pytest.raises(ValueError, match="PIDFLOW_RATE_LIMIT must be >= 1, got 0"):
        Settings.from_env({"PIDFLOW_RATE_LIMIT": "0"})


def test_failed_analysis_reports_its_reason(api):
    job = api.post("/api/v1/analyses", json={"seed": FAILING_SEED}).json()
    status = api.get(job["status_url"]).json()
    assert status["state"] == "failed" and "out of memory" in status["error"]
    response = api.get(job["result_url"])
    assert response.status_code == 409 and "failed: synthetic failure: out of memory" in response.json()["detail"]


def test_datasets_images_and_their_validation(api):
    datasets = {d["name"]: d for d in api.get("/api/v1/datasets").json()}
    assert {"easy-vqa", "gqa"} <= set(datasets)
    tasks = {t["name"] for t in datasets["easy-vqa"]["tasks"]}
    assert {"color", "shape"} <= tasks
    image = api.get("/api/v1/images/easy-vqa.test.3")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    for bad in ("easy-vqa.test.999999", "easy-vqa.nosplit", "cifar.test.1", "..easy-vqa.test.1"):
        assert api.get(f"/api/v1/images/{bad}").status_code == 404, bad
    for body, fragment in (({"dataset": "mnist"}, "unknown dataset 'mnist'"),
                           ({"tasks": ["colour"]}, "unknown task(s) ['colour']"),
                           ({"split": "dev"}, "unknown split 'dev'")):
        response = api.post("/api/v1/analyses", json=body)
        assert response.status_code == 422 and fragment in response.json()["detail"], body


def test_model_size_is_read_from_a_local_config(tmp_path):
    from transformers import LlamaConfig, LlavaConfig

    LlavaConfig(text_config=LlamaConfig(num_hidden_layers=3, hidden_size=64, intermediate_size=128,
                                        num_attention_heads=4, num_key_value_heads=4)).save_pretrained(tmp_path)
    assert real_num_decoder_layers(str(tmp_path)) == 3
    assert real_num_decoder_layers(str(tmp_path / "missing")) is None
