"""Every path counts against the limits, as issue 12's attacks probe them: a dashboard burst, the
boundary of a minute, and guessing tokens (real Redis, the job layer's stand-in)."""

from __future__ import annotations

import time

import pytest
import redis

from app.ui import data
from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ALPHA = {"Authorization": "Bearer alpha"}


@pytest.fixture
def api(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, api_tokens=("alpha", "beta"), rate_limit_per_minute=10, auth_failures_per_minute=5)


def test_the_dashboard_burst_counts_against_the_api_limit(api):
    service = api.app.state.service
    outcomes = []
    for seed in range(15):
        try:
            data.submit(service, {"seed": seed}, "alpha")
            outcomes.append("ok")
        except data.DataError as exc:
            outcomes.append(str(exc))
    assert outcomes[:10] == ["ok"] * 10
    assert all("rate limit of 10 writes per minute reached; try again in" in o for o in outcomes[10:])
    limited = api.post("/api/v1/analyses", json={"seed": 99}, headers=ALPHA)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    with pytest.raises(data.DataError, match="rate limit"):  # sharing from the page is a write too
        data.create_share(service, "whatever", data.writer(service, "alpha"))
    assert api.post("/api/v1/analyses", json={"seed": 99}, headers={"Authorization": "Bearer beta"}).status_code == 202


def test_no_window_of_60_s_admits_more_than_the_limit(api):
    """A sliding window: requests fired every 20 ms for 2.5 windows (1 s windows here, so the test is quick);
    in every window-long span, at most the limit were admitted (a fixed window admits up to twice that
    across a boundary), and the limit is reached again in every window."""
    service = api.app.state.service
    admitted = []
    end = time.time() + 2.5
    while time.time() < end:
        if service._window("pidflow:rate:test-window", 5, count=True, window_s=1) is None:
            admitted.append(time.time())
        time.sleep(0.02)
    spans = [sum(1 for u in admitted if t <= u < t + 0.95) for t in admitted]
    assert max(spans) <= 5 and len(admitted) >= 10


def test_guessing_tokens_is_throttled_per_client(api):
    service = api.app.state.service
    wrong = [api.post("/api/v1/analyses", json={}, headers={"Authorization": f"Bearer guess{i}"}).status_code
             for i in range(5)]
    assert wrong == [401] * 5
    throttled = api.post("/api/v1/analyses", json={}, headers={"Authorization": "Bearer guess5"})
    assert throttled.status_code == 429 and "too many failed authentications" in throttled.json()["detail"]
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    # even the right token is refused from this client now: a guesser learns nothing
    assert api.post("/api/v1/analyses", json={}, headers=ALPHA).status_code == 429
    assert api.get("/api/v1/analyses", headers={"Authorization": "Bearer guess6"}).status_code == 429
    assert service.auth_throttled("10.1.2.3") is None  # other clients are not affected
    # the dashboard's token field is throttled the same way
    with pytest.raises(data.DataError, match="too many wrong tokens"):
        for attempt in range(6):
            with pytest.raises(data.DataError):
                data.check_token(service, f"nope{attempt}")
            service.auth_failed(None)  # outside a Dash request the client address is unknown ("-")
        data.check_token(service, "alpha")
