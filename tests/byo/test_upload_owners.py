"""Hosted mode: a token that uploads bytes someone else uploaded first cannot take the file from them; its
delete drops only its own hold, and the file goes with the last holder's delete."""

from __future__ import annotations

import io

import numpy as np
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

FIRST, SECOND = "first-token", "second-token"


def _npz() -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    np.savez(buffer, vision=rng.normal(size=(3, 40, 4)), language=rng.normal(size=(3, 40, 3)),
             target=rng.normal(size=40))
    return buffer.getvalue()


def _as(token: str) -> dict:
    return {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}


def test_a_second_uploader_cannot_delete_the_first_ones_file(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=(FIRST, SECOND, "third-token"))
    data = _npz()
    sha = api.post("/api/v1/features", content=data, headers=_as(FIRST)).json()["id"]
    assert api.post("/api/v1/features", content=data, headers=_as(SECOND)).status_code == 200  # known bytes
    assert api.delete(f"/api/v1/features/{sha}", headers=_as("third-token")).status_code == 403
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(SECOND)).json() == {"id": sha, "deleted": True}
    assert api.get(f"/api/v1/features/{sha}").status_code == 200  # still the first uploader's
    request = api.get(f"/api/v1/features/{sha}").json()["request"]
    assert api.post("/api/v1/analyses", json={**request, "dims": [1, 1, 1], "bootstrap": 0},
                    headers={"authorization": f"Bearer {FIRST}"}).status_code in (200, 202)
    again = api.delete(f"/api/v1/features/{sha}", headers=_as(SECOND))
    assert again.status_code == 403 and "uploaded" in again.json()["detail"]  # its hold is gone
    assert api.delete(f"/api/v1/features/{sha}", headers=_as(FIRST)).json() == {"id": sha, "deleted": True}
    assert api.get(f"/api/v1/features/{sha}").status_code == 404
