"""Studies follow the hosted privacy model: a study is read through the random handle its submitter got,
never through its content id (which anyone who guesses the request computes); open mode is unchanged."""

from __future__ import annotations

import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ALPHA, BETA = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
STUDY = {"models": ["demo"], "tasks": ["color"], "n_questions": 120, "recipes": ["pidflow"]}


def test_a_guessed_study_id_reads_nothing_in_hosted_mode(redis_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha", "beta"), rate_limit_per_minute=1000)
    assert api.post("/api/v1/studies", json=STUDY).status_code == 401
    submitted = api.post("/api/v1/studies", json=STUDY, headers=ALPHA)
    assert submitted.status_code in (200, 202), submitted.text
    handle = submitted.json()["id"]
    content_ids = [key.decode().rsplit(":", 1)[1] for key in redis.Redis.from_url(redis_url).keys("pidflow:study:*")]
    assert len(content_ids) == 1 and handle not in content_ids
    assert api.get(f"/api/v1/studies/{handle}").status_code == 200
    for path in (f"/api/v1/studies/{content_ids[0]}", f"/api/v1/studies/{content_ids[0]}/report",
                 f"/study/{content_ids[0]}"):
        assert api.get(path).status_code == 404, path
    again = api.post("/api/v1/studies", json=STUDY, headers=ALPHA).json()["id"]
    other = api.post("/api/v1/studies", json=STUDY, headers=BETA).json()["id"]
    assert again == handle and other != handle  # the same token keeps its handle; another gets its own
    assert len(redis.Redis.from_url(redis_url).keys("pidflow:study:*")) == 1  # one computation
    listing = api.get("/api/v1/studies", headers=ALPHA)
    assert listing.status_code == 403 and "does not list studies" in listing.json()["detail"]


def test_open_mode_addresses_studies_by_content_id(redis_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url)
    study_id = api.post("/api/v1/studies", json=STUDY).json()["id"]
    assert redis.Redis.from_url(redis_url).exists(f"pidflow:study:{study_id}")
    assert api.get(f"/api/v1/studies/{study_id}").json()["state"] in ("queued", "running")
    listed = api.get("/api/v1/studies").json()["items"]
    assert [(row["id"], row["models"], row["tasks"], row["page_url"]) for row in listed] == [
        (study_id, ["demo"], ["color"], f"/study/{study_id}")]
    assert api.get("/api/v1/studies?limit=0").status_code == 422


def test_the_dashboard_form_starts_a_study_as_the_api_does_in_hosted_mode(redis_url, monkeypatch):  # noqa: F811
    """The Studies form's path (app.ui.data.submit_study): a valid token needed, each start counted against
    its rate limit, and the same handle the API gives that token."""
    import pytest

    from app.ui import data

    monkeypatch.setenv("REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha",), rate_limit_per_minute=2)
    service = api.app.state.service
    with pytest.raises(data.DataError, match="needs a valid API token"):
        data.submit_study(service, STUDY, "wrong")
    shown = data.submit_study(service, STUDY, "alpha")
    assert shown["id"].startswith("s") and data.study_status(service, shown["id"])["id"] == shown["id"]
    assert api.post("/api/v1/studies", json=STUDY, headers=ALPHA).json()["id"] == shown["id"]
    with pytest.raises(data.DataError, match="rate limit of 2 writes per minute"):
        data.submit_study(service, STUDY, "alpha")
