"""Uploaded features files, written by the API and read by the extract task.

Keys (`<sha>` = sha256 of the uploaded file): `pidflow:upload:<sha>` (hash: `features` = the checked
baseline run, `knockout` = its knocked-out run if any, `info` = JSON summary), `pidflow:upload-images:<sha>`
(hash: question index -> PNG bytes, when the file has images), `pidflow:upload-owners:<sha>` (set of the
uploaders' token hashes, hosted mode). They expire after PIDFLOW_UPLOAD_TTL_S (30 days, as results),
refreshed when the same file is uploaded again.

A run is stored as extracted features are (worker.feature_store): with PIDFLOW_FEATURE_DIR, per-layer
files under <dir>/upload<sha>/ and only a reference in Redis (the API and the workers must share that
volume); without it, the run's npz bytes in Redis. Files whose keys have expired are removed at the next
upload.
"""

from __future__ import annotations

import io
import json
import shutil

from worker import feature_store
from worker.settings import DAY_S

PREFIX = "pidflow:upload:"
IMAGES_PREFIX = "pidflow:upload-images:"
OWNERS_PREFIX = "pidflow:upload-owners:"
DEFAULT_TTL_S = 30 * DAY_S
FILES_PREFIX = "upload"  # <PIDFLOW_FEATURE_DIR>/upload<sha>/{baseline,knockout}/
RUNS = {"features": "baseline", "knockout": "knockout"}  # hash field -> run folder


class UploadMissing(RuntimeError):
    """The features file named by a request is not (or no longer) on this server."""


class UploadStore:
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
        """Store a checked pidcore.featurefile.FeatureSet and its JSON `summary` (default: describe());
        False (expiry refreshed) when it was already here."""
        sha = feature_set.sha256
        key, images_key = PREFIX + sha, IMAGES_PREFIX + sha
        if self.refresh(sha) is not None:
            return False
        self.remove_expired_files()
        runs = {"features": feature_set.features, "knockout": feature_set.knockout}
        self.remove_files(sha)  # a half-written earlier try
        stored = {field: feature_store.save(FILES_PREFIX + sha, RUNS[field], run, self.settings)
                  for field, run in runs.items() if run is not None}
        pipe = self.redis.pipeline()
        if feature_set.images is not None:
            pipe.delete(images_key)
            pipe.hset(images_key, mapping={str(i): _png(image) for i, image in enumerate(feature_set.images)})
            pipe.expire(images_key, self.ttl_s)
        pipe.hset(key, mapping={**stored, "info": json.dumps(summary or feature_set.describe())})
        pipe.expire(key, self.ttl_s)
        pipe.execute()
        return True

    def add_owner(self, sha: str, owner: str) -> None:
        pipe = self.redis.pipeline()
        pipe.sadd(OWNERS_PREFIX + sha, owner)
        pipe.expire(OWNERS_PREFIX + sha, self.ttl_s)
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
        """Delete the feature files of uploads whose Redis keys have expired; their shas."""
        root = self.settings.directory
        if root is None or not root.is_dir():
            return []
        removed = []
        for folder in root.glob(FILES_PREFIX + "*"):
            sha = folder.name[len(FILES_PREFIX):]
            if len(sha) == 64 and sha.isalnum() and not self.redis.exists(PREFIX + sha):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(sha)
        return removed

    def info(self, sha: str) -> dict | None:
        raw = self.redis.hget(PREFIX + sha, "info")
        return json.loads(raw) if raw is not None else None

    def feature_set(self, sha: str):
        """The stored pidcore FeatureSet (images not loaded); UploadMissing when it is not here."""
        from pidcore.featurefile import FeatureSet

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


def _png(image) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def uploaded_features(client, request) -> dict:
    """{"baseline": Features, "knockout": None} of an AnalysisRequest whose model is "features:<sha>"."""
    from pidcore.uploaded import features_sha, select_features

    return select_features(UploadStore(client).feature_set(features_sha(request.model)), request)
