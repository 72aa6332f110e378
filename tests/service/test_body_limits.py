"""Bodies and tokens: in hosted mode an upload without a valid token is refused (401) before its body is
read; only the upload route and the dashboard drop zone's callback take the large limit; every other
body stays small, and the dashboard's callback errors answer JSON, not Flask's HTML pages."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from app.server import DROP_ZONE_OUTPUT, create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import FakeJobs
from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

MIB = 1 << 20
TOKEN = "s3cret-token"


def post_streamed(app, path: str, total: int, headers: dict, declare: bool = True, *, head: bytes = b"",
                  content_type: str = "application/octet-stream",
                  query: bytes = b"filename=f.npz") -> tuple[int, dict, int]:
    """POST `total` bytes to the ASGI app 1 MiB at a time (the same chunk reused, so nothing big is held; the
    first starts with `head`); (status, JSON answer, bytes the app asked for)."""
    chunk, asked, sent = bytes(MIB), 0, []

    async def receive():
        nonlocal asked
        if asked >= total:
            return {"type": "http.disconnect"}
        body = head + chunk[len(head):] if asked == 0 else chunk
        asked += MIB
        return {"type": "http.request", "body": body, "more_body": asked < total}

    async def send(message):
        sent.append(message)

    raw = [(b"content-length", str(total).encode())] if declare else []  # else streamed (chunked)
    raw.append((b"content-type", content_type.encode()))
    raw += [(name.encode(), value.encode()) for name, value in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
             "headers": raw, "client": ("10.0.0.7", 4321), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), asked


@pytest.fixture
def hosted(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, api_tokens=(TOKEN,)).app


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic " + TOKEN])
def test_a_200_mib_upload_without_a_valid_token_is_refused_unread(hosted, authorization):
    headers = {"authorization": authorization} if authorization else {}
    status, answer, asked = post_streamed(hosted, "/api/v1/features", 200 * MIB, headers)
    assert status == 401 and "needs an API token" in answer["detail"]
    assert asked == 0  # not one chunk of the body was read


def test_an_upload_with_its_token_is_read_and_checked(hosted):
    status, answer, asked = post_streamed(hosted, "/api/v1/features", 3 * MIB,
                                           {"authorization": f"Bearer {TOKEN}"})
    assert asked == 3 * MIB and status == 422 and "not a readable npz" in answer["detail"]


def test_other_routes_keep_the_small_limit(hosted):
    status, answer, asked = post_streamed(hosted, "/api/v1/analyses", 3 * MIB, {"authorization": f"Bearer {TOKEN}"})
    assert status == 413 and answer["detail"] == f"request body larger than {64 * 1024} bytes" and asked == 0
    status, answer, asked = post_streamed(hosted, "/api/v1/analyses", 3 * MIB, {"authorization": f"Bearer {TOKEN}"},
                                           declare=False)
    assert status == 413 and asked == MIB  # streamed: refused at the first chunk over the limit


# -- the dashboard ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard(redis_url):  # noqa: F811
    client = redis.Redis.from_url(redis_url)
    service = AnalysisService(Settings(redis_url=redis_url, max_body_bytes=4000), jobs=FakeJobs(client),
                              redis_client=client)
    return TestClient(create_app(service=service, with_ui=True), raise_server_exceptions=False), service


def _drop_zone_body(service, contents: str) -> dict:
    """The JSON the browser sends when a file is dropped on the features zone."""
    from app.ui import create_dash_app

    callback = next(c for c in create_dash_app(service)._callback_list if c["output"].startswith(f"..{DROP_ZONE_OUTPUT}"))
    outputs = [dict(zip(("id", "property"), part.split(".", 1), strict=True))
               for part in callback["output"].strip(".").split("...")]
    values = {"features-upload.filename": "f.npz", "measure.value": "broja", "dim-vision.value": 2,
              "dim-language.value": 2, "dim-target.value": 1, "gaussianize.value": "none", "bootstrap.value": 0,
              "token.value": None}
    state = [{**s, "value": values[f"{s['id']}.{s['property']}"]} for s in callback["state"]]
    return {"output": callback["output"], "outputs": outputs, "changedPropIds": ["features-upload.contents"],
            "inputs": [{"id": "features-upload", "property": "contents", "value": contents}], "state": state}


def _npz_data_url() -> str:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, vision=rng.normal(size=(3, 60, 4)), language=rng.normal(size=(3, 60, 4)),
             target=rng.normal(size=60))
    return "data:application/octet-stream;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_drop_zone_callback_takes_a_file_larger_than_the_small_limit(dashboard):
    api, service = dashboard
    body = json.dumps(_drop_zone_body(service, _npz_data_url())).encode()
    assert len(body) > 4000
    response = api.post("/_dash-update-component", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert "Features file" in json.dumps(response.json()["response"]["features-summary"])


def test_other_callbacks_keep_the_small_limit_and_answer_json(dashboard):
    api, service = dashboard
    other = {**_drop_zone_body(service, _npz_data_url()), "output": "..analysis-id.data..."}
    response = api.post("/_dash-update-component", content=json.dumps(other).encode(),
                        headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json() == {"detail": "request body larger than 4000 bytes"}
    junk = api.post("/_dash-update-component", content=b"x" * (80 * MIB), headers={"content-type": "application/json"})
    assert junk.status_code == 413 and junk.headers["content-type"] == "application/json"
    for body, status in ((b"not json at all", 400), (b'{"output": "nope.children", "outputs": {}, "inputs": []}', 500),
                         (b"[1, 2]", 500)):
        answer = api.post("/_dash-update-component", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status and answer.headers["content-type"] == "application/json", body
        assert "dashboard" in answer.json()["detail"]
