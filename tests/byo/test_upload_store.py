"""Uploaded features files in the feature file store (PIDFLOW_FEATURE_DIR): per-layer files with only a
reference in Redis, read back layer by layer; without a folder, the run's bytes in Redis as before."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from pidcore.features.files import read_features, write_features
from pidcore.features.uploaded import features_request, select_features
from pidcore.pipeline.analysis import AnalysisRequest
from worker import feature_store
from worker.uploads import PREFIX, UploadMissing, UploadStore

N = 40


def _feature_set(tmp_path, seed):
    rng = np.random.default_rng(seed)
    vision, language = rng.normal(size=(4, N, 3)), rng.normal(size=(4, N, 5))
    target = rng.normal(size=(N, 2))
    path = tmp_path / f"f{seed}.npz"
    write_features(path, vision=vision, language=language, target=target, tasks=["a", "b"] * (N // 2),
                   knockout={"vision": vision * 0.5, "language": language, "target": target,
                             "edges": ["image->question"], "layers": [1, 2]})
    return read_features(path)


def test_runs_are_files_with_references_in_redis(client, tmp_path):
    settings = feature_store.FeatureStoreSettings(directory=tmp_path / "features")
    store = UploadStore(client, ttl_s=60, settings=settings)
    feature_set = _feature_set(tmp_path, 1)
    sha = feature_set.sha256
    assert store.put(feature_set) is True and store.put(feature_set) is False
    stored = client.hgetall(PREFIX + sha)
    for field in (b"features", b"knockout"):
        assert stored[field].startswith(feature_store.REF_PREFIX) and len(stored[field]) < 300  # a reference
    assert sorted(p.name for p in (settings.directory / f"upload{sha}").iterdir()) == ["baseline", "knockout"]
    back = store.feature_set(sha)
    assert isinstance(back.features.vision, feature_store.LayerStack)
    np.testing.assert_allclose(back.features.vision[2], feature_set.features.vision[2])
    np.testing.assert_allclose(back.knockout.language[3], feature_set.knockout.language[3])
    assert back.describe()["knockout"] == {"edges": ["image->question"], "layers": [1, 2]}
    # the request's questions, still read layer by layer
    request = AnalysisRequest.from_dict({**features_request(back), "tasks": ["b"], "n_questions": 5})
    picked = select_features(back, request)["baseline"]
    rows = np.flatnonzero(feature_set.features.tasks == "b")[:5]
    assert picked.vision.shape == (4, 5, 3)
    np.testing.assert_allclose(picked.vision[1], feature_set.features.vision[1][rows])
    np.testing.assert_allclose(picked.vision[:, 1:3][0], feature_set.features.vision[0][rows[1:3]])
    # deleting removes the files; a file whose keys expired is swept at the next upload, once older than the
    # sweep's grace period
    assert store.delete(sha) and not (settings.directory / f"upload{sha}").exists()
    with pytest.raises(UploadMissing, match="upload it again"):
        store.feature_set(sha)
    store.put(feature_set)
    client.delete(PREFIX + sha)  # as if it had expired
    old = time.time() - store.sweep_grace_s - 1
    os.utime(settings.directory / f"upload{sha}", (old, old))
    other = _feature_set(tmp_path, 2)
    store.put(other)
    assert not (settings.directory / f"upload{sha}").exists()
    assert (settings.directory / f"upload{other.sha256}").is_dir()
    store.delete(other.sha256)


def test_without_a_feature_folder_runs_stay_in_redis(client, tmp_path):
    store = UploadStore(client, ttl_s=60, settings=feature_store.FeatureStoreSettings(directory=None))
    feature_set = _feature_set(tmp_path, 3)
    store.put(feature_set)
    stored = client.hget(PREFIX + feature_set.sha256, "features")
    assert not stored.startswith(feature_store.REF_PREFIX)
    back = store.feature_set(feature_set.sha256)
    np.testing.assert_array_equal(back.features.vision, feature_set.features.vision)
    assert back.knockout is not None
    store.delete(feature_set.sha256)


def test_missing_files_say_so(client, tmp_path):
    import shutil

    settings = feature_store.FeatureStoreSettings(directory=tmp_path / "features")
    store = UploadStore(client, ttl_s=60, settings=settings)
    feature_set = _feature_set(tmp_path, 4)
    store.put(feature_set)
    shutil.rmtree(settings.directory / f"upload{feature_set.sha256}")
    with pytest.raises(UploadMissing, match="feature files missing.*upload it again"):
        store.feature_set(feature_set.sha256)
    store.delete(feature_set.sha256)
