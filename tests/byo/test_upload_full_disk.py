"""A full feature volume is a clear state: an upload that hits ENOSPC answers 507 saying what is full and
what to do, leaves no partial folder and no Redis key, and goes through once there is room again."""

from __future__ import annotations

import errno
import io

import numpy as np
import pytest
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture
from worker import feature_store
from worker.uploads import PREFIX


def _npz() -> bytes:
    rng = np.random.default_rng(7)
    buffer = io.BytesIO()
    np.savez(buffer, vision=rng.normal(size=(5, 30, 4)), language=rng.normal(size=(5, 30, 3)),
             target=rng.normal(size=30))
    return buffer.getvalue()


@pytest.fixture
def api(redis_url, tmp_path, monkeypatch):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(tmp_path / "features"))
    return make_client(redis_url)


def _disk_fills_after(monkeypatch, writes: int) -> None:
    """np.save (the feature store's layer files) raises ENOSPC after `writes` files, as a full volume would."""
    real_save, done = np.save, []

    def save(*args, **kwargs):
        if len(done) >= writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        done.append(1)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(feature_store.np, "save", save)


def test_a_full_volume_answers_507_and_leaves_nothing(api, monkeypatch, tmp_path, redis_url):  # noqa: F811
    data = _npz()
    _disk_fills_after(monkeypatch, writes=3)  # mid-way through the baseline's layers
    response = api.post("/api/v1/features?filename=f.npz", content=data,
                        headers={"content-type": "application/octet-stream"})
    assert response.status_code == 507, response.text
    detail = response.json()["detail"]
    assert detail.startswith("the feature folder (PIDFLOW_FEATURE_DIR) is full: no space left there for features "
                             "file ") and "Free space on that volume" in detail and "nothing of it was kept" in detail
    assert str(tmp_path) not in detail  # no server paths
    assert list((tmp_path / "features").iterdir()) == []  # no partial folder
    assert redis.Redis.from_url(redis_url).keys(PREFIX + "*") == []
    monkeypatch.undo()  # room again
    again = api.post("/api/v1/features?filename=f.npz", content=data, headers={"content-type": "application/octet-stream"})
    assert again.status_code == 201
    assert [p.name for p in (tmp_path / "features").iterdir()] == ["upload" + again.json()["id"]]


def test_a_full_volume_in_a_worker_leaves_no_folder(tmp_path, monkeypatch):
    from pidcore.features.files import read_features

    features = read_features(_npz(), filename="f.npz").features
    settings = feature_store.FeatureStoreSettings(directory=tmp_path)
    _disk_fills_after(monkeypatch, writes=4)
    with pytest.raises(feature_store.FeatureStoreFull, match="no space left there for the baseline features"):
        feature_store.save("job1", "baseline", features, settings)
    assert list((tmp_path / "job1").iterdir()) == []


def test_uploads_count_against_the_feature_folder_bound(redis_url, tmp_path, monkeypatch):  # noqa: F811
    """PIDFLOW_FEATURE_MAX_GB bounds the folder, uploads included: one that would pass it answers 507."""
    redis.Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PIDFLOW_FEATURE_MAX_GB", str(12_000 / 1024**3))  # one file (~10 kB on disk) fits, not two
    api = make_client(redis_url)
    first = api.post("/api/v1/features?filename=f.npz", content=_npz(), headers={"content-type": "application/octet-stream"})
    assert first.status_code == 201, first.text
    used = feature_store.used_bytes(tmp_path / "features")
    rng = np.random.default_rng(8)
    buffer = io.BytesIO()
    np.savez(buffer, vision=rng.normal(size=(5, 30, 4)), language=rng.normal(size=(5, 30, 3)), target=rng.normal(size=30))
    second = api.post("/api/v1/features?filename=g.npz", content=buffer.getvalue(),
                      headers={"content-type": "application/octet-stream"})
    assert second.status_code == 507, second.text
    assert second.json()["detail"].startswith(f"the feature folder is at its bound (PIDFLOW_FEATURE_MAX_GB = "
                                              f"{12_000 / 1024**3:g} GiB): it holds {used / 2**20:.1f} MiB")
    assert "needs 0.0 MiB more" in second.json()["detail"]  # 5 x 30 x 7 float32 = 4,200 bytes
    assert feature_store.used_bytes(tmp_path / "features") == used
    assert [p.name for p in (tmp_path / "features").iterdir()] == ["upload" + first.json()["id"]]
