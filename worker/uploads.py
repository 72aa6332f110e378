"""Uploaded features files in Redis, written by the API and read by the extract task.

Keys (`<sha>` = sha256 of the uploaded file): `pidflow:upload:<sha>` (hash: `features` = the checked
features as pidcore Features bytes, `knockout` = its knocked-out run if any, `info` = JSON summary), `pidflow:upload-images:<sha>` (hash: question
index -> PNG bytes, when the file has images), `pidflow:upload-owners:<sha>` (set of the uploaders' token
hashes, hosted mode). They expire after PIDFLOW_UPLOAD_TTL_S (30 days, as
results), refreshed when the same file is uploaded again.
"""

from __future__ import annotations

import io
import json

from worker.settings import DAY_S

PREFIX = "pidflow:upload:"
IMAGES_PREFIX = "pidflow:upload-images:"
OWNERS_PREFIX = "pidflow:upload-owners:"
DEFAULT_TTL_S = 30 * DAY_S


class UploadMissing(RuntimeError):
    """The features file named by a request is not (or no longer) on this server."""


class UploadStore:
    def __init__(self, client, ttl_s: int = DEFAULT_TTL_S):
        self.redis, self.ttl_s = client, ttl_s

    def refresh(self, sha: str) -> dict | None:
        """The stored summary of file `sha` with its expiry pushed back, or None when it is not here."""
        pipe = self.redis.pipeline()
        pipe.hget(PREFIX + sha, "info")
        for prefix in (PREFIX, IMAGES_PREFIX, OWNERS_PREFIX):
            pipe.expire(prefix + sha, self.ttl_s)
        info = pipe.execute()[0]
        return json.loads(info) if info is not None else None

    def put(self, feature_set, summary: dict | None = None) -> bool:
        """Store a checked pidcore.featurefile.FeatureSet and its JSON `summary` (default: describe());
        False (expiry refreshed) when it was already here."""
        from pidcore.uploaded import features_bytes

        key, images_key = PREFIX + feature_set.sha256, IMAGES_PREFIX + feature_set.sha256
        if self.refresh(feature_set.sha256) is not None:
            return False
        pipe = self.redis.pipeline()
        if feature_set.images is not None:
            pipe.delete(images_key)
            pipe.hset(images_key, mapping={str(i): _png(image) for i, image in enumerate(feature_set.images)})
            pipe.expire(images_key, self.ttl_s)
        pipe.hset(key, mapping={**features_bytes(feature_set), "info": json.dumps(summary or feature_set.describe())})
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
        return bool(self.redis.delete(PREFIX + sha, IMAGES_PREFIX + sha, OWNERS_PREFIX + sha))

    def info(self, sha: str) -> dict | None:
        raw = self.redis.hget(PREFIX + sha, "info")
        return json.loads(raw) if raw is not None else None

    def feature_set(self, sha: str):
        """The stored pidcore FeatureSet (images not loaded); UploadMissing when it is not here."""
        from pidcore.uploaded import stored_set

        features, knockout = self.redis.hmget(PREFIX + sha, ["features", "knockout"])
        if features is None:
            raise UploadMissing(f"the features file {sha[:12]}... is not on this server (never uploaded, or older "
                                f"than PIDFLOW_UPLOAD_TTL_S): upload it again")
        return stored_set({"features": features, **({"knockout": knockout} if knockout is not None else {})}, sha)

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
