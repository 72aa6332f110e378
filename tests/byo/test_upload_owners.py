"""Hosted mode: each token that uploads a features file gets its own id for it (a handle) and only that
token deletes by it; a token that uploads bytes someone else uploaded first cannot take the file from them
(its delete drops only its own hold, and the file goes with the last holder's delete); a per-token storage
quota (PIDFLOW_UPLOAD_QUOTA_GB) answers 507 saying what the token holds and needs."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

FIRST, SECOND, THIRD = "first-token", "second-token", "third-token"


def _npz(seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(buffer, vision=rng.normal(size=(3, 40, 4)), language=rng.normal(size=(3, 40, 3)),
             target=rng.normal(size=40))
    return buffer.getvalue()


def _as(token: str) -> dict:
    return {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}


def test_each_uploader_gets_its_own_handle_and_only_its_owner_deletes_by_it(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=(FIRST, SECOND, THIRD))
    data = _npz()
    first = api.post("/api/v1/features", content=data, headers=_as(FIRST))
    assert first.status_code == 201
    sha, mine = first.json()["sha256"], first.json()["id"]
    assert mine.startswith("u") and len(mine) == 33 and first.json()["model"] == f"features:{sha}"
    again = api.post("/api/v1/features", content=data, headers=_as(FIRST)).json()
    assert again["id"] == mine and again["created"] is False  # the same token: the same handle
    second = api.post("/api/v1/features", content=data, headers=_as(SECOND))
    assert second.status_code == 200 and second.json()["created"] is False  # known bytes
    theirs = second.json()["id"]
    assert theirs != mine and second.json()["sha256"] == sha and second.json()["model"] == f"features:{sha}"
    for handle in (mine, theirs):  # each reads its file by its own id
        assert api.get(f"/api/v1/features/{handle}").json()["sha256"] == sha
    # nobody deletes by another token's handle, not even a token that holds the same file
    assert api.delete(f"/api/v1/features/{mine}", headers=_as(THIRD)).status_code == 403
    refused = api.delete(f"/api/v1/features/{mine}", headers=_as(SECOND))
    assert refused.status_code == 403 and "under this id" in refused.json()["detail"]
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(THIRD)).status_code == 403  # holds none
    assert api.delete(f"/api/v1/features/{theirs}", headers=_as(SECOND)).json() == {"id": theirs, "deleted": True}
    assert api.get(f"/api/v1/features/{theirs}").status_code == 404  # that handle is gone
    assert api.get(f"/api/v1/features/{mine}").status_code == 200  # the first uploader's file stays
    request = api.get(f"/api/v1/features/{mine}").json()["request"]
    assert api.post("/api/v1/analyses", json={**request, "dims": [1, 1, 1], "bootstrap": 0},
                    headers={"authorization": f"Bearer {FIRST}"}).status_code in (200, 202)
    assert api.delete(f"/api/v1/features/{mine}", headers=_as(FIRST)).json() == {"id": mine, "deleted": True}
    for gone in (mine, sha):
        assert api.get(f"/api/v1/features/{gone}").status_code == 404


def test_a_holder_still_deletes_by_the_files_sha(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=(FIRST, SECOND))
    data = _npz()
    sha = api.post("/api/v1/features", content=data, headers=_as(FIRST)).json()["sha256"]
    theirs = api.post("/api/v1/features", content=data, headers=_as(SECOND)).json()["id"]
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(SECOND)).json() == {"id": sha, "deleted": True}
    assert api.get(f"/api/v1/features/{theirs}").status_code == 404  # its handle went with its hold
    assert api.get(f"/api/v1/features/{sha}").status_code == 200  # the first's hold keeps the file
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(SECOND)).status_code == 403
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(FIRST)).json()["deleted"] is True
    assert api.get(f"/api/v1/features/{sha}").status_code == 404


def test_a_tokens_uploads_stay_within_its_quota(redis_url, monkeypatch):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    size = 3 * 40 * (4 + 3) * 4  # the layer states of one file, float32: 3,360 bytes
    monkeypatch.setenv("PIDFLOW_UPLOAD_QUOTA_GB", str(1.5 * size / 1024**3))  # room for one file, not two
    api = make_client(redis_url, api_tokens=(FIRST, SECOND))
    one, two = _npz(1), _npz(2)
    first = api.post("/api/v1/features", content=one, headers=_as(FIRST)).json()
    assert first["stored_bytes"] == size
    refused = api.post("/api/v1/features", content=two, headers=_as(FIRST))
    assert refused.status_code == 507
    detail = refused.json()["detail"]
    assert "PIDFLOW_UPLOAD_QUOTA_GB" in detail and "holds 3,360 bytes" in detail and "needs 3,360 bytes more" in detail
    sha_two = hashlib.sha256(two).hexdigest()
    assert api.get(f"/api/v1/features/{sha_two}").status_code == 404  # nothing of it was kept
    assert api.post("/api/v1/features", content=one, headers=_as(FIRST)).status_code == 200  # held: no charge
    assert api.post("/api/v1/features", content=two, headers=_as(SECOND)).status_code == 201  # its own quota
    # the second file is now here, but holding it too would still pass the first token's quota
    assert api.post("/api/v1/features", content=two, headers=_as(FIRST)).status_code == 507
    assert api.delete(f"/api/v1/features/{first['id']}", headers=_as(FIRST)).json()["deleted"] is True
    assert api.post("/api/v1/features", content=two, headers=_as(FIRST)).status_code == 200  # room again
