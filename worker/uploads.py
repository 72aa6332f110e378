"""Uploaded features files, written by the API and read by the extract task.

Keys (`<sha>` = sha256 of the uploaded file): `pidflow:upload:<sha>` (hash: `features` = the checked
baseline run, `knockout` = its knocked-out run if any, `info` = JSON summary), `pidflow:upload-images:<sha>`
(hash: question index -> PNG bytes, when the file has images), `pidflow:upload-owners:<sha>` (set of the
uploaders' token hashes, hosted mode: a token's delete drops its own hold, and the file goes with the
last), `pidflow:upload-handle:<handle>` (hash: sha, owner: the id one token got for the file, hosted mode;
`u` + 32 hex digits), `pidflow:upload-handle-of:<owner>:<sha>` (that handle), `pidflow:upload-usage:<owner>`
(hash: sha -> bytes of its layer files, for the per-token quota PIDFLOW_UPLOAD_QUOTA_GB). They expire
after PIDFLOW_UPLOAD_TTL_S (30 days, as results), refreshed when the same file is uploaded again.

A run is stored as extracted features are (worker.feature_store): with PIDFLOW_FEATURE_DIR, per-layer
files under <dir>/upload<sha>/ and only a reference in Redis (the API and the workers must share that
volume); without it, the run's npz bytes in Redis. An upload is written into a private folder
<dir>/.partial-upload<sha>.<random>/, renamed to upload<sha>/ when whole, and only then published in Redis,
so a published upload always has its files and concurrent uploads never see each other's halves. A
re-upload of bytes whose files are missing writes them again. The sweep (`remove_expired_files`, at each
upload and from every worker's heartbeat) removes upload<sha>/ folders without keys only once they are older than `sweep_grace_s` (10 min:
an upload publishes its key within moments of its rename), and private folders of uploads that died
after `abandoned_s` (1 hour).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from worker import feature_store
from worker.settings import DAY_S

PREFIX = "pidflow:upload:"
IMAGES_PREFIX = "pidflow:upload-images:"
OWNERS_PREFIX = "pidflow:upload-owners:"
HANDLE_PREFIX = "pidflow:upload-handle:"
HANDLE_OF_PREFIX = "pidflow:upload-handle-of:"
USAGE_PREFIX = "pidflow:upload-usage:"
HANDLE_MARK = "u"  # a handle is "u" + 32 hex digits; a sha256 is 64
DEFAULT_TTL_S = 30 * DAY_S
FILES_PREFIX = "upload"  # <PIDFLOW_FEATURE_DIR>/upload<sha>/{baseline,knockout}/
TEMP_PREFIX = ".partial-upload"  # <PIDFLOW_FEATURE_DIR>/.partial-upload<sha>.<random>/: an upload being written
SPOOL_PREFIX = TEMP_PREFIX + "-body."  # <PIDFLOW_FEATURE_DIR>/.partial-upload-body.<random>: a body being received
SWEEP_GRACE_S = 600
MIB = 1 << 20
ABANDONED_S = 3600
RUNS = {"features": "baseline", "knockout": "knockout"}  # hash field -> run folder


class NeedsFeatureFolder(ValueError):
    """A file whose runs fit no Redis value on a server without a feature folder (HTTP 413)."""


class UploadMissing(RuntimeError):
    """The features file named by a request is not (or no longer) on this server."""


class UploadStore:
    sweep_grace_s = SWEEP_GRACE_S
    abandoned_s = ABANDONED_S

    def __init__(self, client, ttl_s: int = DEFAULT_TTL_S, settings: feature_store.FeatureStoreSettings | None = None):
        self.redis, self.ttl_s = client, ttl_s
        self.settings = settings or feature_store.env_settings()

    def refresh(self, sha: str) -> dict | None:
        """The stored summary of file `sha` with its expiry pushed back, or None when it is not here."""
        pipe = self.redis.pipeline(transaction=False)  # a read and EXPIREs, which a full Redis still takes
        pipe.hget(PREFIX + sha, "info")
        for prefix in (PREFIX, IMAGES_PREFIX, OWNERS_PREFIX):
            pipe.expire(prefix + sha, self.ttl_s)
        info = pipe.execute()[0]
        return json.loads(info) if info is not None else None

    def put(self, feature_set, summary: dict | None = None) -> bool:
        """Store a checked pidcore.features.files.FeatureSet and its JSON `summary` (default: describe());
        False (expiry refreshed) when it was already here with its files; True when written (again)."""
        sha = feature_set.sha256
        if self.refresh(sha) is not None and not self.files_missing(sha):
            return False
        self.remove_expired_files()
        runs = {field: run for field, run in (("features", feature_set.features), ("knockout", feature_set.knockout))
                if run is not None}
        for _ in range(3):  # a sweep that took the folder between its rename and the key: write it again
            self._publish(feature_set, self._store_runs(sha, runs), summary)
            if not self.files_missing(sha):
                return True
        raise OSError(f"the files of features file {sha[:12]}... vanished as soon as they were written")

    def files_missing(self, sha: str) -> bool:
        """Whether the stored upload `sha` names feature files that are no longer (all) there."""
        return any(value is not None and not feature_store.present(value)
                   for value in self.redis.hmget(PREFIX + sha, list(RUNS)))

    def _store_runs(self, sha: str, runs: dict) -> dict[str, bytes]:
        """What goes into Redis for each run: npz bytes, or references to files written into a private
        folder and renamed into place whole."""
        root = self.settings.directory
        if root is None:
            self._check_redis_room(sha, runs)
            return {field: feature_store.save(FILES_PREFIX + sha, RUNS[field], run, self.settings)
                    for field, run in runs.items()}
        self._check_room(sha, runs)
        private = f"{TEMP_PREFIX}{sha}.{uuid.uuid4().hex}"
        try:
            for field, run in runs.items():
                feature_store.save(private, RUNS[field], run, self.settings)
            # the references come from this upload's own copy (the same bytes as any copy at the final name, which
            # a concurrent upload of the same file may be replacing while this one reads)
            manifests = {field: feature_store.read_manifest(root / private / RUNS[field]) for field in runs}
            folder = _move_into_place(root / private, root / (FILES_PREFIX + sha), [RUNS[f] for f in runs])
        except OSError as error:
            if error.errno in feature_store.FULL_ERRNOS:
                raise feature_store.full_disk(error, f"features file {sha[:12]}...") from error
            raise
        finally:
            shutil.rmtree(root / private, ignore_errors=True)
        return {field: feature_store.reference(folder / RUNS[field], manifests[field]) for field in runs}

    def _check_redis_room(self, sha: str, runs: dict) -> None:
        """NeedsFeatureFolder (413) when, without a feature folder, a run would not fit one Redis value
        (PIDFLOW_FEATURE_REDIS_MAX_MB; Redis itself refuses 512 MiB), before anything is written."""
        limit = self.settings.redis_max_bytes
        for field, run in runs.items():
            needed = feature_store.run_bytes(run, str(np.dtype(run.vision.dtype)))
            if needed > limit:
                raise NeedsFeatureFolder(
                    f"features file {sha[:12]}...: its {RUNS[field]} run holds {needed / MIB:.0f} MiB of pooled "
                    f"states, more than one Redis value can hold here ({limit / MIB:.0f} MiB, "
                    f"PIDFLOW_FEATURE_REDIS_MAX_MB), and this server has no feature folder: set PIDFLOW_FEATURE_DIR "
                    f"(a volume the API and workers share; `pidflow serve` keeps one in its data dir), or send "
                    f"fewer layers or questions")

    def _check_room(self, sha: str, runs: dict) -> None:
        """FeatureStoreFull (507) when the folder's files and this upload's would pass PIDFLOW_FEATURE_MAX_GB."""
        limit = self.settings.max_bytes
        if limit is None:
            return
        needed = sum(feature_store.run_bytes(run, self.settings.run_dtype(run)) for run in runs.values())
        root = self.settings.directory  # received bodies (SPOOL_PREFIX) are not kept: they do not count
        used = feature_store.used_bytes(root) - sum(_size(p) for p in root.glob(SPOOL_PREFIX + "*"))
        if used + needed > limit:
            raise feature_store.FeatureStoreFull(
                errno.ENOSPC, f"the feature folder is at its bound (PIDFLOW_FEATURE_MAX_GB = {limit / 1024**3:g} GiB): "
                              f"it holds {used / 2**20:.1f} MiB and features file {sha[:12]}... needs {needed / 2**20:.1f} "
                              f"MiB more. Delete uploads and analyses no longer needed, or raise PIDFLOW_FEATURE_MAX_GB")

    def _publish(self, feature_set, stored: dict[str, bytes], summary: dict | None) -> None:
        sha = feature_set.sha256
        key, images_key = PREFIX + sha, IMAGES_PREFIX + sha
        pipe = self.redis.pipeline()
        if feature_set.images is not None:
            pipe.delete(images_key)
            pipe.hset(images_key, mapping={str(i): _png(image) for i, image in enumerate(feature_set.images)})
            pipe.expire(images_key, self.ttl_s)
        pipe.hset(key, mapping={**stored, "info": json.dumps(summary or feature_set.describe())})
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def add_owner(self, sha: str, owner: str) -> None:
        pipe = self.redis.pipeline()
        pipe.sadd(OWNERS_PREFIX + sha, owner)
        pipe.expire(OWNERS_PREFIX + sha, self.ttl_s)
        pipe.execute()

    def release(self, sha: str, owner: str) -> bool:
        """Drop `owner`'s hold on upload `sha` (its handle and its use of the quota too); True when no owner
        is left (then the caller deletes it). Of owners releasing at once, at least the last sees none left."""
        handle = self.redis.get(HANDLE_OF_PREFIX + f"{owner}:{sha}")
        pipe = self.redis.pipeline(transaction=False)  # deletions and a read: a full Redis takes them
        if handle is not None:
            pipe.delete(HANDLE_PREFIX + _text(handle))
        pipe.delete(HANDLE_OF_PREFIX + f"{owner}:{sha}")
        pipe.hdel(USAGE_PREFIX + owner, sha)
        pipe.srem(OWNERS_PREFIX + sha, owner)
        pipe.scard(OWNERS_PREFIX + sha)
        return pipe.execute()[-1] == 0

    def handle(self, sha: str, owner: str) -> str:
        """The id token `owner` reads and deletes upload `sha` by (hosted mode): its own, random, the same
        one each time it uploads the file again (expiry refreshed)."""
        key = HANDLE_OF_PREFIX + f"{owner}:{sha}"
        candidate = HANDLE_MARK + uuid.uuid4().hex
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, candidate, nx=True, ex=self.ttl_s)
        pipe.get(key)
        handle = _text(pipe.execute()[1])
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(HANDLE_PREFIX + handle, mapping={"sha": sha, "owner": owner})
        pipe.expire(HANDLE_PREFIX + handle, self.ttl_s)
        pipe.expire(key, self.ttl_s)
        pipe.execute()
        return handle

    def resolve(self, handle: str) -> tuple[str, str] | None:
        """(sha, owner) of a handle, None when it is not one (or expired, or deleted)."""
        if not (isinstance(handle, str) and handle.startswith(HANDLE_MARK) and handle[1:].isalnum()):
            return None
        sha, owner = self.redis.hmget(HANDLE_PREFIX + handle, ["sha", "owner"])
        return (_text(sha), _text(owner)) if sha is not None and owner is not None else None

    def usage(self, owner: str) -> int:
        """Bytes of the uploads `owner` holds (each counted whole, shared or not); entries of uploads that
        expired or that it no longer holds are dropped on the way."""
        held = {_text(k): int(v) for k, v in self.redis.hgetall(USAGE_PREFIX + owner).items()}
        if not held:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for sha in held:
            pipe.exists(PREFIX + sha)
            pipe.sismember(OWNERS_PREFIX + sha, owner)
        answers = pipe.execute()
        gone = [sha for index, sha in enumerate(held) if not (answers[2 * index] and answers[2 * index + 1])]
        if gone:
            self.redis.hdel(USAGE_PREFIX + owner, *gone)
        return sum(size for sha, size in held.items() if sha not in gone)

    def charge(self, sha: str, owner: str, size: int) -> None:
        """Count upload `sha` (`size` bytes) against `owner`'s quota."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(USAGE_PREFIX + owner, sha, int(size))
        pipe.expire(USAGE_PREFIX + owner, self.ttl_s)
        pipe.execute()

    def owners(self, sha: str) -> set[str]:
        return {o.decode() if isinstance(o, bytes) else o for o in self.redis.smembers(OWNERS_PREFIX + sha)}

    def delete(self, sha: str) -> bool:
        """Remove the file, its images and owners; False when it was not here."""
        self.remove_files(sha)
        return bool(self.redis.delete(PREFIX + sha, IMAGES_PREFIX + sha, OWNERS_PREFIX + sha))

    def remove_files(self, sha: str) -> None:
        feature_store.remove(FILES_PREFIX + sha, self.settings)

    def remove_expired_files(self) -> list[str]:
        """Delete the feature files of uploads whose Redis keys have expired, once their folders are older
        than `sweep_grace_s`, and private folders of uploads abandoned for `abandoned_s`; the shas removed."""
        root = self.settings.directory
        if root is None or not root.is_dir():
            return []
        removed = []
        for folder in root.iterdir():
            if folder.name.startswith(TEMP_PREFIX):
                if _age_s(folder) > self.abandoned_s:
                    if folder.is_dir():
                        shutil.rmtree(folder, ignore_errors=True)
                    else:  # a received body (SPOOL_PREFIX) whose upload died
                        folder.unlink(missing_ok=True)
                continue
            sha = folder.name[len(FILES_PREFIX):]
            if (folder.name.startswith(FILES_PREFIX) and len(sha) == 64 and sha.isalnum()
                    and _age_s(folder) > self.sweep_grace_s and not self.redis.exists(PREFIX + sha)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(sha)
        return removed

    def info(self, sha: str) -> dict | None:
        raw = self.redis.hget(PREFIX + sha, "info")
        return json.loads(raw) if raw is not None else None

    def feature_set(self, sha: str):
        """The stored pidcore FeatureSet (images not loaded); UploadMissing when it is not here."""
        from pidcore.features.files import FeatureSet

        features, knockout = self.redis.hmget(PREFIX + sha, ["features", "knockout"])
        if features is None:
            raise UploadMissing(f"the features file {sha[:12]}... is not on this server (never uploaded, or older "
                                f"than PIDFLOW_UPLOAD_TTL_S): upload it again")
        try:  # no re-checking: it was checked at upload; layers of file-backed runs are read on access
            baseline, knocked = (feature_store.load(value) if value is not None else None
                                 for value in (features, knockout))
        except FileNotFoundError as error:
            raise UploadMissing(f"the features file {sha[:12]}...: {error}; upload it again") from error
        return FeatureSet(features=baseline, images=None, sha256=sha, format="stored", knockout=knocked)

    def image_png(self, sha: str, index: int) -> bytes | None:
        return self.redis.hget(IMAGES_PREFIX + sha, str(index))


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _age_s(folder: Path) -> float:
    try:
        return time.time() - folder.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _move_into_place(private: Path, final: Path, runs: list[str]) -> Path:
    """Rename the whole `private` folder to `final`, unless a whole copy (same sha, same content) is there
    already; a damaged copy is moved aside and removed first. Returns `final`."""
    for _ in range(5):
        if all(feature_store.run_complete(final / run) for run in runs):
            os.utime(final)  # young again: the sweep leaves it alone until its key is published
            return final
        if final.exists():  # damaged, or a whole copy another upload renamed in since the check above
            if all(feature_store.run_complete(final / run) for run in runs):
                continue
            aside = final.with_name(f"{TEMP_PREFIX}{final.name[len(FILES_PREFIX):]}.{uuid.uuid4().hex}")
            try:
                os.rename(final, aside)
            except FileNotFoundError:
                pass
            if all(feature_store.run_complete(aside / run) for run in runs):  # a whole copy landed meanwhile
                with contextlib.suppress(OSError):
                    os.rename(aside, final)
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(private, final)
            return final
        except OSError as error:  # another upload of the same bytes renamed its copy first
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise OSError(f"could not move {private.name} to {final.name}: other uploads of the same file kept replacing it")


def _png(image) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def uploaded_features(client, request) -> dict:
    """{"baseline": Features, "knockout": None} of an AnalysisRequest whose model is "features:<sha>"."""
    from pidcore.features.uploaded import features_sha, select_features

    return select_features(UploadStore(client).feature_set(features_sha(request.model)), request)
