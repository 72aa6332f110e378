"""Deleting an analysis revokes its share links at once: every read through them (the /shared routes and
the `share:<token>` handle on /analyses reads, whose result an API process may hold in memory) answers a
JSON 404, in open and hosted mode; the other token's analysis of the same request keeps its own links."""

from __future__ import annotations

import pytest
import redis

from tests.service.test_api_routes import _fake_model_size, make_client, redis_url  # noqa: F401 - fixtures

ALPHA, BETA = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
REQUEST = {"n_questions": 50, "bootstrap": 0}


def _reads(stok: str) -> list[str]:
    return [f"/api/v1/shared/{stok}", f"/api/v1/shared/{stok}/result", f"/api/v1/shared/{stok}/result.csv",
            f"/api/v1/shared/{stok}/questions/0", f"/api/v1/analyses/share:{stok}",
            f"/api/v1/analyses/share:{stok}/result", f"/api/v1/analyses/share:{stok}/result.csv"]


@pytest.mark.parametrize("hosted", [False, True], ids=["open", "hosted"])
def test_shares_of_a_deleted_analysis_answer_404(redis_url, hosted):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, **({"api_tokens": ("alpha", "beta")} if hosted else {}))
    mine = ALPHA if hosted else {}
    job = api.post("/api/v1/analyses", json=REQUEST, headers=mine).json()
    stok = api.post(f"/api/v1/analyses/{job['id']}/share", headers=mine).json()["share_token"]
    reads = [path for path in _reads(stok) if not path.endswith("/questions/0")]
    result = api.get(f"/api/v1/analyses/share:{stok}/result").json()
    assert result["runs"]["baseline"]["layers"][0]["layer"] == 0  # read once: now held in memory too
    assert [api.get(path).status_code for path in reads] == [200] * len(reads)
    if hosted:  # another token's analysis of the same request (the same job) keeps its link
        theirs = api.post("/api/v1/analyses", json=REQUEST, headers=BETA).json()
        other = api.post(f"/api/v1/analyses/{theirs['id']}/share", headers=BETA).json()["share_token"]
    assert api.delete(f"/api/v1/analyses/{job['id']}", headers=mine).json() == {"id": job["id"], "deleted": True}
    for path in _reads(stok):
        gone = api.get(path)
        assert gone.status_code == 404, (path, gone.status_code)
        assert gone.headers["content-type"] == "application/json" and gone.json()["detail"], path
    assert api.get(f"/api/v1/analyses/{job['id']}/shares", headers=mine).status_code == 404
    if hosted:
        assert api.get(f"/api/v1/shared/{other}/result").json()["runs"]["baseline"]["layers"][0]["layer"] == 0


def test_a_link_made_as_its_analysis_is_deleted_does_not_answer(redis_url):  # noqa: F811
    """A link written after the delete removed the analysis's index of links (a race of share and delete)
    names an analysis with no index: it answers 404 even once an identical request makes the job again."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    api = make_client(redis_url)
    job = api.post("/api/v1/analyses", json=REQUEST).json()
    service = api.app.state.service
    late = service.registry.share(job["id"])["share_token"]
    client.delete(f"pidflow:shares:{job['id']}")  # as if the delete had removed the index just before
    assert api.get(f"/api/v1/shared/{late}").status_code == 404
    assert api.post("/api/v1/analyses", json=REQUEST).json()["id"] == job["id"]  # open mode: the same id
    assert api.get(f"/api/v1/shared/{late}/result").status_code == 404
