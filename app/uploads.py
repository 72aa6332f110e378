"""Features files uploaded to the service (POST /api/v1/features, the dashboard's drop zone): checked with
pidcore.features.files, stored through worker.uploads, then analysed as model "features:<sha256>".

Errors: `UploadTooLarge` (HTTP 413), `ValueError` for a file or request that does not fit (422),
`KeyError` for an unknown file or image (404), `UploadQuotaExceeded` (507) past a token's
PIDFLOW_UPLOAD_QUOTA_GB.

Hosted mode: each token that uploads a file gets its own id for it (a handle, `u` + 32 hex digits; the
same one when it uploads the file again), reads and deletes it by that id, and only that token may delete
it; the file itself (model `features:<sha256>`, shared by every analysis of those bytes) goes with the last
holder's delete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from worker.feature_store import FeatureStoreFull, positive_setting, run_bytes
from worker.uploads import SPOOL_PREFIX, NeedsFeatureFolder, UploadStore

DECODED_PER_UPLOAD_BYTE = 2  # a file's arrays may decode to at most twice PIDFLOW_MAX_UPLOAD_BYTES
PREFIX = "features:"  # pidcore.features.uploaded.PREFIX; not imported at start so that the API's import stays light
IMAGE_PREFIX = "upload."  # image ids of a file's questions (pidcore.features.files)


class UploadTooLarge(ValueError):
    """The body is over PIDFLOW_MAX_UPLOAD_BYTES, or needs a feature folder this server has not."""


class UploadQuotaExceeded(FeatureStoreFull):
    """The uploading token's files would pass its storage quota, PIDFLOW_UPLOAD_QUOTA_GB (HTTP 507, as a
    full feature folder: nothing of the upload is kept)."""


def upload_quota(env=None) -> int | None:
    """PIDFLOW_UPLOAD_QUOTA_GB in bytes: what one token's uploads may hold in all (hosted mode); None
    (unset) for no bound beyond PIDFLOW_FEATURE_MAX_GB. ValueError when it is not a positive number."""
    return positive_setting(os.environ if env is None else env, "PIDFLOW_UPLOAD_QUOTA_GB", 1024**3, None)


@dataclass
class ReceivedFile:
    """An upload's body, streamed to a file on disk (`receive`): its path, sha256 and size."""

    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def spool_folder(settings=None) -> Path:
    """Where a body is streamed: the feature folder (its layer files go there next; the upload sweep removes
    a spool abandoned for an hour), else the system's temporary folder."""
    from worker.feature_store import env_settings

    directory = (settings or env_settings()).directory
    if directory is None:
        return Path(tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def receive(chunks, max_bytes: int, folder: Path | None = None) -> ReceivedFile:
    """Stream an upload's body (an async iterator of bytes, e.g. starlette's `request.stream()`) into a
    private file, hashing as it goes: memory is one chunk whatever the body's size. UploadTooLarge as soon
    as it passes `max_bytes` (nothing is kept)."""
    path = (folder or spool_folder()) / f"{SPOOL_PREFIX}{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(f"the features file is over {max_bytes} bytes; this server accepts up to "
                                         f"{max_bytes} bytes (PIDFLOW_MAX_UPLOAD_BYTES)")
                digest.update(chunk)
                file.write(chunk)
    except BaseException as error:
        path.unlink(missing_ok=True)
        if isinstance(error, OSError):
            from worker.feature_store import FULL_ERRNOS, full_disk

            if error.errno in FULL_ERRNOS:
                raise full_disk(error, "the uploaded file") from error
        raise
    return ReceivedFile(path=path, sha256=digest.hexdigest(), size=size)


STREAMED_DEFAULT_BYTES = 4 << 30  # POST /api/v1/features with a feature folder: streamed to disk, read a layer at a time


def streamed_limit(settings, env=None) -> int:
    """The most a features file sent to POST /api/v1/features may hold. PIDFLOW_MAX_UPLOAD_BYTES when it is
    set (or the settings were given another value); else 4 GiB where a feature folder stores uploads (the
    body goes to disk and is read a layer at a time: memory does not grow with it, so a 7B model's 1,000
    questions, 516 MiB in float16, go through by default), and 256 MiB without one (the dashboard's drop
    zone, which holds its body in memory, keeps that limit either way)."""
    import os

    from app.settings import Settings
    from worker.feature_store import env_settings

    env = os.environ if env is None else env
    if env.get("PIDFLOW_MAX_UPLOAD_BYTES") or settings.max_upload_bytes != Settings.max_upload_bytes:
        return settings.max_upload_bytes
    return STREAMED_DEFAULT_BYTES if env_settings(env).directory is not None else settings.max_upload_bytes


def limits(settings) -> dict:
    """What a client needs before sending a features file (OPTIONS /api/v1/features): the upload limit,
    whether a feature folder stores uploads, and else the most one run may hold in Redis."""
    from worker.feature_store import env_settings

    store = env_settings()
    limit = streamed_limit(settings)
    return {"max_upload_bytes": limit, "feature_folder": store.directory is not None,
            "max_run_bytes_without_feature_folder": None if store.directory is not None else store.redis_max_bytes,
            "decoded_bound_bytes": DECODED_PER_UPLOAD_BYTE * limit}


def is_features_model(model) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


class FeatureUploads:
    def __init__(self, settings, redis_client):
        self.settings = settings
        self.store = UploadStore(redis_client, settings.upload_ttl_s)

    def upload(self, data: bytes | ReceivedFile, filename: str | None = None, token: str | None = None) -> dict:
        """Check and store a features file (its bytes, or a ReceivedFile streamed to disk: then it is read a
        layer at a time and memory does not grow with its size): its summary (id, model, sizes, tasks),
        `created` (False when the same file was here already with its files) and `request`, the
        AnalysisRequest that analyses all of it."""
        from pidcore.features.files import read_features
        from pidcore.features.uploaded import features_request

        on_disk = isinstance(data, ReceivedFile)  # the REST route's streamed body, else the dashboard's bytes
        limit = streamed_limit(self.settings) if on_disk else self.settings.max_upload_bytes
        size = data.size if on_disk else len(data)
        if size > limit:
            raise UploadTooLarge(f"the features file is {size} bytes; this server accepts up to {limit} "
                                 f"bytes (PIDFLOW_MAX_UPLOAD_BYTES)")
        if not size:
            raise ValueError("no file: send the features file's bytes as the body "
                             "(Content-Type: application/octet-stream)")
        sha = data.sha256 if on_disk else hashlib.sha256(data).hexdigest()
        owner = _owner(token) if token else None
        known = self.store.refresh(sha)  # the same bytes were checked before
        if known is None or self.store.files_missing(sha):  # new, or its files were lost: (re)write them
            bound = DECODED_PER_UPLOAD_BYTE * limit
            feature_set = read_features(data.path, filename=filename, max_bytes=bound, lazy=True,
                                        sha256=sha) if on_disk else \
                read_features(data, filename=filename, max_bytes=bound)
            known = {**feature_set.describe(), "request": features_request(feature_set),
                     "stored_bytes": self._stored_bytes(feature_set)}
            if owner:
                self._check_quota(owner, sha, known["stored_bytes"])
            try:
                created = self.store.put(feature_set, known)
            except NeedsFeatureFolder as error:
                raise UploadTooLarge(str(error)) from error
        else:
            created = False
            if owner:
                self._check_quota(owner, sha, _bytes_of(known))
        if not owner:
            return {**known, "sha256": sha, "created": created}
        self.store.add_owner(sha, owner)
        self.store.charge(sha, owner, _bytes_of(known))
        return {**known, "id": self.store.handle(sha, owner), "sha256": sha, "created": created}

    def _stored_bytes(self, feature_set) -> int:
        """Bytes the file's runs take once stored (layer files, or npz values in Redis)."""
        settings = self.store.settings
        return sum(run_bytes(run, settings.run_dtype(run))
                   for run in (feature_set.features, feature_set.knockout) if run is not None)

    def _check_quota(self, owner: str, sha: str, size: int) -> None:
        """UploadQuotaExceeded when this token's uploads and this one would pass PIDFLOW_UPLOAD_QUOTA_GB (a
        file the token holds already costs nothing more)."""
        quota = upload_quota()
        if quota is None or owner in self.store.owners(sha):
            return
        used = self.store.usage(owner)
        if used + size > quota:
            raise UploadQuotaExceeded(
                errno.EDQUOT, f"this token's uploads would pass its quota (PIDFLOW_UPLOAD_QUOTA_GB = "
                              f"{quota / 1024**3:g} GiB): it holds {_amount(used)} of features files and this "
                              f"one needs {_amount(size)} more; nothing of it was kept. Delete uploads "
                              f"this token no longer needs (DELETE /api/v1/features/<id>), or ask for a larger quota")

    def delete(self, features_id: str, token: str | None = None) -> bool:
        """Remove an uploaded file (analyses already finished keep their results). In hosted mode only the
        token that got this id may (PermissionError): its own handle, or the sha256 of a file it uploaded;
        when other tokens uploaded the same bytes only this token's hold (and handle) goes, and the file stays
        for them until the last of them deletes it. KeyError when unknown."""
        sha, handle_owner = self._sha_of(features_id)
        self.info(sha)
        if token is None:
            return self.store.delete(sha)
        owner = _owner(token)
        if (handle_owner or owner) != owner or owner not in self.store.owners(sha):
            raise PermissionError("only the token that uploaded this features file under this id may delete it")
        if self.store.release(sha, owner):
            self.store.delete(sha)
        return True

    def _sha_of(self, features_id: str) -> tuple[str, str | None]:
        """(sha256, owner of the handle or None) of an id: a token's handle, or the file's sha256."""
        found = self.store.resolve(features_id)
        return found if found is not None else (features_id, None)

    def info(self, features_id: str) -> dict:
        """The stored summary of an uploaded file (with its `request`) by its sha256 or a token's handle
        (then `id` is that handle); KeyError when unknown."""
        sha, _ = self._sha_of(features_id) if isinstance(features_id, str) else (None, None)
        info = self.store.info(sha) if isinstance(sha, str) and sha.isalnum() else None
        if info is None:
            raise KeyError(f"unknown features file {features_id!r} (never uploaded, or older than "
                           f"PIDFLOW_UPLOAD_TTL_S)")
        return {**info, "id": features_id, "sha256": sha}

    def validate(self, request: dict) -> None:
        """ValueError unless the request names an uploaded file and fits it (tasks, pooling, target)."""
        from pidcore.features.uploaded import check_request, features_sha
        from pidcore.pipeline.analysis import AnalysisRequest

        sha = features_sha(request.get("model"))
        try:
            info = self.info(sha)
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]}: upload it first (POST /api/v1/features)") from exc
        parsed = AnalysisRequest.from_dict(dict(request))
        check_request(parsed, info)
        _precheck(parsed, info)

    def num_layers(self, model: str) -> int | None:
        """Decoder layers of an uploaded file (its layers minus the embedding layer), None when unknown."""
        try:
            return self.info(model[len(PREFIX):])["num_layers"] - 1
        except KeyError:
            return None

    def image(self, image_id: str) -> bytes | None:
        """PNG bytes of an uploaded question image ("upload.<sha>.<index>"); None for other image ids,
        KeyError when unknown."""
        if not image_id.startswith(IMAGE_PREFIX):
            return None
        _, sha, index = (image_id.split(".") + ["", ""])[:3]
        png = self.store.image_png(sha, int(index)) if index.isdigit() and sha.isalnum() else None
        if png is None:
            raise KeyError(f"unknown image {image_id!r}")
        return png


def _amount(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _bytes_of(info: dict) -> int:
    """Bytes an upload takes once stored: recorded at upload, else (older uploads) counted as float32."""
    if info.get("stored_bytes") is not None:
        return int(info["stored_bytes"])
    runs = 2 if info.get("knockout") else 1
    return runs * info["num_layers"] * info["n_questions"] * (info["vision_dim"] + info["language_dim"]) * 4


def _owner(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def _precheck(request, info: dict) -> None:
    """As app.precheck for models: refuse PCA sizes beyond the file's dimensions, or too few of its questions
    for them (each cross-fitting fold needs more questions than latent dimensions)."""
    from app.precheck import Refused
    from pidcore.pipeline import costs
    from pidcore.pipeline.validation import rows_needed

    dims = list(request.dims)
    for index, (name, size) in enumerate((("vision", info["vision_dim"]), ("language", info["language_dim"]),
                                          ("target", info["target_dim"]))):
        if dims[index] > size:
            raise Refused("dims", f"the file's {name} has {size} dimensions: its PCA size can be at most {size} "
                                  f"(asked {dims[index]})")
    total = sum(min(request.n_questions, info["tasks"][task]) for task in request.tasks)
    needed = rows_needed(sum(dims), request.bootstrap) * costs.FOLDS
    if total < needed and not request.correct_only:
        raise Refused("dims", f"PCA sizes {' + '.join(map(str, dims))} = {sum(dims)} latent dimensions need at "
                              f"least {needed} questions in all ({costs.FOLDS} folds of {needed // costs.FOLDS}); "
                              f"the file gives {total}: lower the PCA sizes or add questions")
