"""Hosted mode: the dashboard's drop zone sends its token as a header (the `pidflow_token` cookie, set by
the browser from the API token field), so a drop-zone body without a valid one is refused (401) having read
no more than the small body limit and one chunk; with it the file goes through; other callbacks keep the
small limit without any token."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient

from app.server import DROP_ZONE_OUTPUT, TOKEN_COOKIE, create_app
from app.service import AnalysisService
from app.settings import Settings
from app.ui.upload_callbacks import SET_TOKEN_COOKIE
from app.ui.upload_callbacks import TOKEN_COOKIE as UI_COOKIE
from tests.service.fakejobs import FakeJobs
from tests.service.test_api_routes import redis_url  # noqa: F401 - fixture
from tests.service.test_body_limits import _drop_zone_body, _npz_data_url, post_streamed

MIB = 1 << 20
TOKEN = "drop-zone-s3cret"
SMALL = 4000


@pytest.fixture(scope="module")
def hosted(redis_url):  # noqa: F811
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    service = AnalysisService(Settings(redis_url=redis_url, max_body_bytes=SMALL, api_tokens=(TOKEN,)),
                              jobs=FakeJobs(client), redis_client=client)
    return create_app(service=service, with_ui=True), service


def _stream_drop(app, head: bytes, total: int, headers: dict) -> tuple[int, dict, int]:
    """POST a drop-zone callback body of `total` bytes (its JSON start `head`, then filler) 1 MiB at a time;
    (status, JSON answer, bytes the app asked for)."""
    return post_streamed(app, "/_dash-update-component", total, headers, head=head, content_type="application/json",
                         query=b"")


@pytest.mark.parametrize("headers", [{}, {"cookie": f"{TOKEN_COOKIE}=wrong"}, {"authorization": "Bearer wrong"},
                                     {"cookie": f"other={TOKEN}"}])
def test_a_tokenless_drop_is_refused_with_its_body_unread(hosted, headers):
    app, _ = hosted
    head = json.dumps({"output": f"..{DROP_ZONE_OUTPUT}...pending-id.data..."}).encode()[:-1] + b', "inputs": "'
    status, answer, asked = _stream_drop(app, head, 200 * MIB, headers)
    assert status == 401 and "needs an API token" in answer["detail"]
    assert asked == MIB  # the first chunk (over the small limit) only, of 200 MiB


@pytest.mark.parametrize("headers", [{"cookie": f"theme=dark; {TOKEN_COOKIE}={TOKEN}"},
                                     {"authorization": f"Bearer {TOKEN}"}])
def test_a_drop_with_its_token_in_the_headers_goes_through(hosted, headers):
    app, service = hosted
    body = _drop_zone_body(service, _npz_data_url())
    body["state"] = [{**s, "value": TOKEN} if s["id"] == "token" else s for s in body["state"]]
    content = json.dumps(body).encode()
    assert len(content) > SMALL
    response = TestClient(app).post("/_dash-update-component", content=content,
                                    headers={"content-type": "application/json", **headers})
    assert response.status_code == 200, response.text
    assert "Features file" in json.dumps(response.json()["response"]["features-summary"])


def test_other_callbacks_need_no_token_and_keep_the_small_limit(hosted):
    app, service = hosted
    other = {**_drop_zone_body(service, _npz_data_url()), "output": "..analysis-id.data..."}
    response = TestClient(app).post("/_dash-update-component", content=json.dumps(other).encode(),
                                    headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json() == {"detail": f"request body larger than {SMALL} bytes"}


def test_the_browser_sets_the_cookie_the_server_reads():
    assert UI_COOKIE == TOKEN_COOKIE
    assert f'"{TOKEN_COOKIE}=" + value' in SET_TOKEN_COOKIE and "SameSite=Strict" in SET_TOKEN_COOKIE
