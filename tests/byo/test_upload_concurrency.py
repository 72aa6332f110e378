"""Uploads into the feature folder that are never lost: each is written into a private temporary folder,
renamed into place, and only then published in Redis; the expiry sweep leaves young folders and uploads
in progress alone; a re-upload of bytes whose files are missing restores them. Real Redis."""

from __future__ import annotations

import io
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.settings import Settings
from app.uploads import FeatureUploads
from worker import feature_store
from worker.uploads import FILES_PREFIX, PREFIX, TEMP_PREFIX, UploadStore

N, LAYERS = 40, 4


@pytest.fixture
def folder(tmp_path, monkeypatch, client):
    client.flushdb()
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(tmp_path / "features"))
    return tmp_path / "features"


def _file_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    arrays = {"vision": rng.normal(size=(LAYERS, N, 6)), "language": rng.normal(size=(LAYERS, N, 5)),
              "target": rng.normal(size=(N, 2))}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _uploads(client) -> FeatureUploads:
    return FeatureUploads(Settings(redis_url="unused"), client)


def _usable(client, sha: str, seed: int) -> bool:
    """The stored upload reads back, layer by layer, as the bytes that were sent."""
    expected = np.random.default_rng(seed).normal(size=(LAYERS, N, 6)).astype(np.float32)
    stored = UploadStore(client).feature_set(sha)
    return all(np.array_equal(stored.features.vision[layer], expected[layer]) for layer in range(LAYERS))


def test_eight_concurrent_uploads_are_all_usable_ten_times_over(client, folder):
    """Four distinct files and four copies of a fifth, uploaded at once, ten rounds (each on an empty
    Redis, so every round writes files again while others sweep)."""
    seeds = [1, 2, 3, 4, 5, 5, 5, 5]
    files = [_file_bytes(seed) for seed in seeds]
    for round_ in range(10):
        client.flushdb()
        shutil.rmtree(folder, ignore_errors=True)
        uploads = _uploads(client)
        with ThreadPoolExecutor(len(seeds)) as pool:
            answers = list(pool.map(uploads.upload, files, ["f.npz"] * len(files)))
        assert sum(answer["created"] for answer in answers[4:]) >= 1, f"round {round_}"
        for seed, answer in zip(seeds, answers, strict=True):
            assert _usable(client, answer["id"], seed), f"round {round_}: upload of seed {seed} is not usable"
        assert sorted(p.name for p in folder.iterdir()) == sorted(FILES_PREFIX + a["id"] for a in answers[:5])


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_sweep_leaves_young_folders_and_uploads_in_progress(client, folder):
    store = UploadStore(client)
    kept = _uploads(client).upload(_file_bytes(1), "f.npz")["id"]
    expired = _uploads(client).upload(_file_bytes(2), "f.npz")["id"]
    client.delete(PREFIX + expired)  # as if its keys had expired
    young = folder / (FILES_PREFIX + "a" * 64)  # renamed into place, not yet published
    in_progress = folder / f"{TEMP_PREFIX}{'b' * 64}.1234"
    abandoned = folder / f"{TEMP_PREFIX}{'c' * 64}.5678"
    for path in (young, in_progress, abandoned):
        path.mkdir()
    assert store.remove_expired_files() == []  # the expired one is still younger than the grace period
    _age(folder / (FILES_PREFIX + expired), store.sweep_grace_s + 1)
    _age(abandoned, store.abandoned_s + 1)
    _age(folder / (FILES_PREFIX + kept), store.sweep_grace_s + 1)  # old, but its key is there
    assert store.remove_expired_files() == [expired]
    assert sorted(p.name for p in folder.iterdir()) == sorted([FILES_PREFIX + kept, young.name, in_progress.name])


def test_a_re_upload_restores_missing_files(client, folder):
    uploads = _uploads(client)
    data = _file_bytes(3)
    sha = uploads.upload(data, "f.npz")["id"]
    shutil.rmtree(folder / (FILES_PREFIX + sha) / "baseline" / "vision")
    assert UploadStore(client).files_missing(sha)
    again = uploads.upload(data, "f.npz")
    assert again["created"] is True and not UploadStore(client).files_missing(sha)
    assert _usable(client, sha, 3)
    assert uploads.upload(data, "f.npz")["created"] is False  # whole: recognised by its sha256
    assert [p.name for p in folder.iterdir()] == [FILES_PREFIX + sha]
    assert feature_store.run_complete(folder / (FILES_PREFIX + sha) / "baseline")


def test_a_workers_heartbeat_sweeps_expired_uploads(client, folder):
    """Expired uploads' files go at the next heartbeat sweep, without waiting for another upload."""
    from worker.heartbeat import Heartbeat

    expired = _uploads(client).upload(_file_bytes(4), "f.npz")["id"]
    kept = _uploads(client).upload(_file_bytes(5), "f.npz")["id"]
    client.delete(PREFIX + expired)
    for sha in (expired, kept):
        _age(folder / (FILES_PREFIX + sha), UploadStore.sweep_grace_s + 1)
    beat = Heartbeat(client, "sweeper", ttl_s=3, sweep_s=60).start()
    try:
        deadline = time.monotonic() + 10
        while (folder / (FILES_PREFIX + expired)).exists():
            assert time.monotonic() < deadline, "the heartbeat did not sweep"
            time.sleep(0.05)
    finally:
        beat.stop()
    assert [p.name for p in folder.iterdir()] == [FILES_PREFIX + kept]
    assert _usable(client, kept, 5)


def test_a_whole_copy_that_lands_between_the_check_and_the_move_is_kept(tmp_path, monkeypatch):
    """The race CI met once: upload A renames its whole copy into place just after upload B found the place
    empty; B must not move A's copy aside and delete it (A is reading its manifest), nor replace it."""
    from worker import uploads as upload_module

    final, private = tmp_path / (FILES_PREFIX + "abc"), tmp_path / (TEMP_PREFIX + "abc.mine")
    for folder in (final, private):
        (folder / "baseline").mkdir(parents=True)
    (final / "baseline" / "marker").write_text("A's copy")
    checks = []
    complete = feature_store.run_complete

    def racing(path):  # B's first look happens before A's rename: nothing there yet
        checks.append(path)
        return False if len(checks) == 1 else path.parent == final or complete(path)

    monkeypatch.setattr(feature_store, "run_complete", racing)
    assert upload_module._move_into_place(private, final, ["baseline"]) == final
    assert (final / "baseline" / "marker").read_text() == "A's copy"
