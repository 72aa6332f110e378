"""Privacy and ownership in hosted mode, written as the attacks of issue 12 (two tokens, real Redis, the
job layer's stand-in): the guessed id, the leaked id, the resubmit-then-delete; share links that expire
and can be listed and revoked; each token's own paged list; the queued-work quota."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ALPHA, BETA = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
REQUEST = {"n_questions": 50, "seed": 3, "bootstrap": 0}  # small enough for the up-front check


@pytest.fixture
def api(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, api_tokens=("alpha", "beta"), rate_limit_per_minute=1000)


def _content_id(body: dict) -> str:
    """What an attacker computes offline: the stand-in job layer's content-hash id of a request (after
    the schema's defaults), as the real job layer's is of its canonical request."""
    from app.api.schemas import AnalysisRequestBody

    full = AnalysisRequestBody(**body).model_dump()
    return "a" + hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:20]


def test_the_guessed_id_reads_nothing(api, redis_url):  # noqa: F811
    job = api.post("/api/v1/analyses", json=REQUEST, headers=ALPHA).json()
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    guessed = _content_id(REQUEST)
    assert redis.Redis.from_url(redis_url).exists(f"fakejobs:status:{guessed}")  # the job is there...
    for path in (f"/api/v1/analyses/{guessed}", f"/api/v1/analyses/{guessed}/result",
                 f"/api/v1/analyses/{guessed}/questions/easy-vqa.test.0"):
        assert api.get(path).status_code == 404  # ...but not under its content hash
    assert api.get(f"/api/v1/analyses/{job['id']}/result").status_code == 200
    # identical requests of two tokens: two ids, one computation
    other = api.post("/api/v1/analyses", json=REQUEST, headers=BETA).json()
    assert other["id"] != job["id"] and other["cached"]
    assert len(redis.Redis.from_url(redis_url).keys("fakejobs:status:*")) == 1
    again = api.post("/api/v1/analyses", json=REQUEST, headers=ALPHA)
    assert again.status_code == 200 and again.json()["id"] == job["id"]  # the same token: the same id


def test_the_share_link_leaks_no_id_and_can_be_listed_revoked_and_expire(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha", "beta"), rate_limit_per_minute=1000, share_ttl_s=2)
    job = api.post("/api/v1/analyses", json=REQUEST, headers=ALPHA).json()
    secrets_of_alpha = (job["id"], _content_id(REQUEST))
    link = api.post(f"/api/v1/analyses/{job['id']}/share", headers=ALPHA).json()
    assert link["expires_at"] - link["created_at"] == pytest.approx(2)
    token = link["share_token"]
    base = f"/api/v1/shared/{token}"
    answers = [api.get(base), api.get(base + "/result"), api.get(base + "/result", params={"format": "csv"}),
               api.get(base + "/questions/easy-vqa.test.0")]
    for answer in answers:
        assert answer.status_code == 200
        text = answer.text + json.dumps(dict(answer.headers))
        assert not any(secret in text for secret in secrets_of_alpha), answer.request.url
    assert answers[1].json() == api.get(job["result_url"]).json()
    # beta holds the link but cannot share, list or revoke alpha's links; the link is no write credential
    assert api.post(f"/api/v1/analyses/{job['id']}/share", headers=BETA).status_code == 403
    assert api.get(f"/api/v1/analyses/{job['id']}/shares", headers=BETA).status_code == 403
    assert api.post(f"/api/v1/analyses/share:{token}/share", headers=BETA).status_code == 403
    listed = api.get(f"/api/v1/analyses/{job['id']}/shares", headers=ALPHA).json()
    assert [entry["share_token"] for entry in listed] == [token]
    second = api.post(f"/api/v1/analyses/{job['id']}/share", headers=ALPHA).json()["share_token"]
    revoked = api.delete(f"/api/v1/analyses/{job['id']}/shares/{token}", headers=ALPHA)
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    for path in (base, base + "/result"):
        answer = api.get(path)
        assert answer.status_code == 404 and "revoked" in answer.json()["detail"]
    assert api.delete(f"/api/v1/analyses/{job['id']}/shares/{token}", headers=ALPHA).status_code == 404
    assert api.get(f"/api/v1/shared/{second}/result").status_code == 200
    time.sleep(2.2)
    assert api.get(f"/api/v1/shared/{second}/result").status_code == 404  # expired
    assert api.get(f"/api/v1/analyses/{job['id']}/shares", headers=ALPHA).json() == []


def test_resubmit_then_delete_cannot_take_over(api):
    """Beta reads alpha's shared result, resubmits its request (200, cached) and tries to delete alpha's
    analysis: 403. Beta's delete of its own copy leaves alpha's result; alpha's delete ends the job."""
    job = api.post("/api/v1/analyses", json=REQUEST, headers=ALPHA).json()
    token = api.post(f"/api/v1/analyses/{job['id']}/share", headers=ALPHA).json()["share_token"]
    shared = api.get(f"/api/v1/shared/{token}/result").json()
    resubmitted = api.post("/api/v1/analyses", json=shared["request"], headers=BETA)
    assert resubmitted.status_code == 200 and resubmitted.json()["cached"]
    attack = api.delete(f"/api/v1/analyses/{job['id']}", headers=BETA)
    assert attack.status_code == 403 and "only the token that submitted" in attack.json()["detail"]
    assert api.get(job["result_url"]).status_code == 200
    assert api.delete(f"/api/v1/analyses/{resubmitted.json()['id']}", headers=BETA).status_code == 200
    assert api.get(job["result_url"]).status_code == 200  # still alpha's, still computed
    assert api.get(f"/api/v1/shared/{token}/result").status_code == 200
    assert api.delete(f"/api/v1/analyses/{job['id']}", headers=ALPHA).status_code == 200
    assert api.get(job["result_url"]).status_code == 404
    assert api.get(f"/api/v1/shared/{token}/result").status_code == 404  # its links went with it
    assert not redis.Redis.from_url(api.app.state.service.settings.redis_url).keys("fakejobs:status:*")


def test_each_token_lists_its_own_analyses_in_pages(api, redis_url):  # noqa: F811
    assert api.get("/api/v1/analyses").status_code == 401
    ids = [api.post("/api/v1/analyses", json={"seed": seed}, headers=ALPHA).json()["id"] for seed in range(5)]
    beta_id = api.post("/api/v1/analyses", json={"seed": 0}, headers=BETA).json()["id"]
    first = api.get("/api/v1/analyses", params={"limit": 2}, headers=ALPHA).json()
    second = api.get("/api/v1/analyses", params={"limit": 2, "offset": 2}, headers=ALPHA).json()
    rest = api.get("/api/v1/analyses", params={"limit": 2, "offset": 4}, headers=ALPHA).json()
    assert first["total"] == 5 and [len(p["items"]) for p in (first, second, rest)] == [2, 2, 1]
    listed = [item["id"] for page in (first, second, rest) for item in page["items"]]
    assert listed == ids[::-1]  # newest first
    assert first["items"][0]["state"] == "succeeded" and first["items"][0]["result_url"].endswith("/result")
    assert [item["id"] for item in api.get("/api/v1/analyses", headers=BETA).json()["items"]] == [beta_id]
    assert api.get("/api/v1/analyses", params={"limit": 101}, headers=ALPHA).status_code == 422
    assert first["items"][0]["model"] == "demo" and first["items"][0]["n_questions"] == 400  # what it asked for (the default)
    found = api.get("/api/v1/analyses", params={"q": ids[2][:8]}, headers=ALPHA).json()  # a search: the matches
    assert found["total"] == 1 and [item["id"] for item in found["items"]] == [ids[2]]
    assert api.get("/api/v1/analyses", params={"q": ids[2][:8]}, headers=BETA).json()["total"] == 0
    # open mode: one list of everything, ids are the job ids
    open_api = make_client(redis_url)
    job = open_api.post("/api/v1/analyses", json={"seed": 77}).json()
    assert open_api.get("/api/v1/analyses").json()["items"][0]["id"] == job["id"]


def test_a_token_may_queue_only_so_much_work(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, hold=True, api_tokens=("alpha", "beta"), rate_limit_per_minute=1000,
                      max_active_per_token=2)
    codes = [api.post("/api/v1/analyses", json={"seed": s}, headers=ALPHA).status_code for s in range(3)]
    assert codes == [202, 202, 429]
    refused = api.post("/api/v1/analyses", json={"seed": 9}, headers=ALPHA)
    assert "2 analyses queued or running" in refused.json()["detail"] and refused.headers["retry-after"]
    assert api.post("/api/v1/analyses", json={"seed": 9}, headers=BETA).status_code == 202  # per token
    first = api.get("/api/v1/analyses", headers=ALPHA).json()["items"][-1]["id"]
    assert api.delete(f"/api/v1/analyses/{first}", headers=ALPHA).status_code == 200
    assert api.post("/api/v1/analyses", json={"seed": 9}, headers=ALPHA).status_code == 202
