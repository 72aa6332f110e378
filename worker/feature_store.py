"""Where a job's features live: files on a volume the workers share (PIDFLOW_FEATURE_DIR), one file per
layer and source, with only a small reference in Redis; or, without a folder, npz bytes in Redis as before.

Layout: <dir>/<job id>/<run>/{manifest.json, answers.npz, vision/<layer>.npy, language/<layer>.npy}
(float32, or float16 with PIDFLOW_FEATURE_DTYPE=float16: half the disk, analysed as float32). A reader
loads only the layers it is asked for, so an analyze task holds one layer batch, never the whole set.

Capacity is checked at submission (`check_capacity`): a request whose features cannot fit what is
configured — a Redis value (512 MiB, PIDFLOW_FEATURE_REDIS_MAX_MB) or PIDFLOW_FEATURE_MAX_GB on the
volume — is refused with a message saying why and what would fit. A job that will extract (not one
answered from its cached result or already queued) is also checked against what the folder holds now
(`check_room`: 507 saying what is held and needed).

Lifecycle of the folders (nothing is left behind): an analysis's folder <job id>/ (32 hex digits) goes
when its result is written, when it fails, and when it is deleted (running or not); a study's part
folder <study id>p<part>/ goes when the study finishes, and a failed or cancelled study's stay for
PIDFLOW_STUDY_RESUME_S (7 days; they count against PIDFLOW_FEATURE_MAX_GB meanwhile) so that a re-run can
reuse them. `sweep` (every worker's heartbeat, at start and every 10 minutes) removes whatever those
paths missed: folders of jobs whose keys are gone (deleted, expired) or that finished or failed, and of
studies that are gone, finished, or failed or cancelled longer ago than the resume period. A folder of a
queued or running job or study is never touched, nor any folder younger than SWEEP_GRACE_S; uploads'
folders are worker.uploads' sweep's.
"""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

REF_PREFIX = b"pidflow-feature-ref:"
FILE_REF_PREFIX = b"pidflow-features-file:"  # a run inside a user's features file, read in place (studies)
DTYPES = ("float32", "float16")
_ANSWERS = ("target", "p_correct", "correct", "predicted", "qids", "tasks", "answers", "answer_set", "questions",
            "image_ids")
MIB = 1024 * 1024
DAY_S = 86400
RESUME_S = 7 * DAY_S  # a failed study's features are kept this long (PIDFLOW_STUDY_RESUME_S)
SWEEP_GRACE_S = 600  # the sweep leaves folders younger than this alone
JOB_FOLDER = re.compile(r"[0-9a-f]{32}")  # worker.cache.job_id_for
STUDY_FOLDER = re.compile(r"([0-9a-f]{32})p[0-9]+")  # worker.studies.features_owner
LIVE = ("queued", "running")


def env_settings(env: dict | None = None) -> FeatureStoreSettings:
    return FeatureStoreSettings.from_env(env)


@dataclass(frozen=True)
class FeatureStoreSettings:
    """PIDFLOW_FEATURE_DIR (unset: features in Redis), PIDFLOW_FEATURE_DTYPE, PIDFLOW_FEATURE_MAX_GB
    (unset: the volume's free space), PIDFLOW_FEATURE_REDIS_MAX_MB (one Redis value; Redis refuses 512),
    PIDFLOW_STUDY_RESUME_S (how long a failed study's features are kept for a re-run; 7 days)."""

    directory: Path | None = None
    dtype: str = "float32"
    max_bytes: int | None = None
    redis_max_bytes: int = 500 * MIB
    dtype_given: bool = False  # PIDFLOW_FEATURE_DTYPE set: every run in `dtype`; unset: float16 runs stay float16
    resume_s: int = RESUME_S

    def run_dtype(self, features) -> str:
        """The dtype a run's layer files get: `dtype`, except that float16 states (an uploaded float16
        file) stay float16 unless PIDFLOW_FEATURE_DTYPE asks for float32."""
        if not self.dtype_given and np.dtype(getattr(features.vision, "dtype", np.float32)) == np.float16:
            return "float16"
        return self.dtype

    @classmethod
    def from_env(cls, env: dict | None = None) -> FeatureStoreSettings:
        env = dict(os.environ if env is None else env)
        dtype = env.get("PIDFLOW_FEATURE_DTYPE") or "float32"
        if dtype not in DTYPES:
            raise ValueError(f"PIDFLOW_FEATURE_DTYPE must be one of {', '.join(DTYPES)}, got {dtype!r}")
        directory = env.get("PIDFLOW_FEATURE_DIR") or None
        return cls(directory=Path(directory) if directory else None, dtype=dtype,
                   dtype_given=bool(env.get("PIDFLOW_FEATURE_DTYPE")),
                   max_bytes=positive_setting(env, "PIDFLOW_FEATURE_MAX_GB", 1024**3, None),
                   redis_max_bytes=positive_setting(env, "PIDFLOW_FEATURE_REDIS_MAX_MB", MIB, 500 * MIB),
                   resume_s=positive_setting(env, "PIDFLOW_STUDY_RESUME_S", 1, RESUME_S))


def positive_setting(env, name: str, scale: float, default):
    """int(float(env[name]) * scale), or `default` when unset or empty; ValueError naming the setting when it
    is not a positive number."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return int(value * scale)


# -- sizes and the submission check ----------------------------------------------------------------------

def feature_bytes(num_layers: int, hidden: int, questions: int, runs: int, dtype: str = "float32") -> int:
    """Bytes of pooled features: (decoder layers + 1) x questions x hidden x 2 sources per run."""
    return (num_layers + 1) * questions * hidden * 2 * runs * np.dtype(dtype).itemsize


def model_shape(model: str) -> tuple[int, int] | None:
    """(decoder layers, hidden size) from the model's config.json without loading weights; None when the
    config is not on this machine (the check is then left to the workers)."""
    path = None
    if model == "demo":
        from pidcore.demo import demo_model_path

        path = demo_model_path() / "config.json"
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser() / "config.json"
    elif model.count("/") == 1 and not model.startswith((".", "/", "~")):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
        path = Path(found) if isinstance(found, str) else None
    if path is None or not path.is_file():
        return None
    config = json.loads(path.read_text())
    text = config.get("text_config") or config
    layers, hidden = text.get("num_hidden_layers"), text.get("hidden_size")
    return (int(layers), int(hidden)) if layers and hidden else None


def check_capacity(model: str, questions: int, runs: int, settings: FeatureStoreSettings | None = None) -> int | None:
    """Estimated feature bytes of a request; ValueError saying why and what would fit when they cannot
    be stored as configured. None when the model's shape is unknown here."""
    settings = settings or env_settings()
    shape = model_shape(model)
    if shape is None:
        return None
    layers, hidden = shape
    per_question = feature_bytes(layers, hidden, 1, 1, settings.dtype if settings.directory else "float32")
    needed = per_question * questions * runs
    if settings.directory is None:
        limit, where = settings.redis_max_bytes, (f"one Redis value (at most {settings.redis_max_bytes / MIB:.0f} MiB, "
                                                  "PIDFLOW_FEATURE_REDIS_MAX_MB)")
        if per_question * questions > limit:  # each run is one value
            fit = limit // per_question
            raise ValueError(f"features of {questions} questions for {model} ({layers + 1} layers x {hidden} x 2 "
                             f"sources, float32) need {per_question * questions / MIB:.0f} MiB per run, more than "
                             f"{where}; ask for at most {fit} questions, or set PIDFLOW_FEATURE_DIR to a volume the "
                             f"workers share (files per layer)")
        return needed
    limit = settings.max_bytes
    source = "PIDFLOW_FEATURE_MAX_GB"
    if limit is None:
        settings.directory.mkdir(parents=True, exist_ok=True)
        limit, source = shutil.disk_usage(settings.directory).free, f"the free space of {settings.directory}"
    if needed > limit:
        fit = limit // (per_question * runs)
        raise ValueError(f"features of {questions} questions x {runs} run(s) for {model} need "
                         f"{needed / 1024**3:.2f} GiB ({settings.dtype}), more than {limit / 1024**3:.2f} GiB "
                         f"({source}); ask for at most {fit} questions, use PIDFLOW_FEATURE_DTYPE=float16, "
                         f"or give the volume more room")
    return needed


def held_bytes(settings: FeatureStoreSettings | None = None) -> int:
    """Bytes the feature folder holds now: every analysis's, study part's and upload's files (bodies still
    being received, which are not kept, left out, as the uploads' own check does); 0 without a folder."""
    settings = settings or env_settings()
    root = settings.directory
    if root is None or not root.is_dir():
        return 0
    from worker.uploads import SPOOL_PREFIX

    spooled = 0
    for path in root.glob(SPOOL_PREFIX + "*"):
        try:
            spooled += path.stat().st_size
        except FileNotFoundError:
            pass
    return max(0, used_bytes(root) - spooled)


def check_room(needed: int, what: str, settings: FeatureStoreSettings | None = None) -> None:
    """FeatureStoreFull (HTTP 507) when what the feature folder holds now and `needed` more bytes (a new
    job's features, as `check_capacity` estimated them) would pass PIDFLOW_FEATURE_MAX_GB. Without that bound
    the volume's free space, which `check_capacity` compares, already leaves out what the folder holds."""
    settings = settings or env_settings()
    limit = settings.max_bytes
    if settings.directory is None or limit is None:
        return
    held = held_bytes(settings)
    if held + needed > limit:
        raise FeatureStoreFull(
            errno.ENOSPC, f"the feature folder is at its bound (PIDFLOW_FEATURE_MAX_GB = {limit / 1024**3:g} GiB): "
                          f"it holds {held / MIB:.1f} MiB and {what} need {needed / MIB:.1f} MiB more; nothing was "
                          f"queued. Wait for running analyses and studies to finish (their files go with their "
                          f"results), delete uploads and analyses no longer needed, or raise PIDFLOW_FEATURE_MAX_GB")


# -- reading and writing ---------------------------------------------------------------------------------

class LayerStack:
    """(layers, n, hidden) pooled states read one layer at a time from .npy files (as float32).
    `stack[:, rows]` is a stack of those questions only, still read layer by layer."""

    def __init__(self, folder: Path, num_layers: int, n: int, hidden: int, rows: np.ndarray | None = None):
        self.folder, self.rows = folder, rows
        self.shape = (num_layers, n if rows is None else len(rows), hidden)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, layer):
        if isinstance(layer, tuple):  # [:, rows]: the questions `rows` of every layer
            if len(layer) != 2 or layer[0] != slice(None):
                raise IndexError("a LayerStack takes [layer], [layers] or [:, rows]")
            rows = np.arange(self.shape[1])[layer[1]]
            rows = rows if self.rows is None else self.rows[rows]
            return LayerStack(self.folder, self.shape[0], 0, self.shape[2], rows=rows)
        if isinstance(layer, (int, np.integer)):
            if not 0 <= layer < self.shape[0]:
                raise IndexError(f"layer {layer} outside 0..{self.shape[0] - 1}")
            states = np.load(self.folder / f"{int(layer):03d}.npy").astype(np.float32, copy=False)
            return states if self.rows is None else states[self.rows]
        return np.stack([self[index] for index in range(self.shape[0])[layer]])


class RunWriter:
    """Writes one run layer by layer (bounded memory), then `finish(answers)` makes it visible at once."""

    def __init__(self, root: Path, job_id: str, run: str, dtype: str):
        self.final = root / job_id / run
        self.folder = root / job_id / f".{run}.{uuid.uuid4().hex}"
        (self.folder / "vision").mkdir(parents=True)
        (self.folder / "language").mkdir()
        self.dtype, self.layers, self.shape = dtype, 0, None

    def write_layer(self, vision: np.ndarray, language: np.ndarray) -> None:
        if self.shape is not None and vision.shape != self.shape:
            raise ValueError(f"layer shape {vision.shape} differs from the first layer's {self.shape}")
        self.shape = vision.shape
        np.save(self.folder / "vision" / f"{self.layers:03d}.npy", np.asarray(vision, dtype=self.dtype))
        np.save(self.folder / "language" / f"{self.layers:03d}.npy", np.asarray(language, dtype=self.dtype))
        self.layers += 1

    def finish(self, answers: dict, meta: dict) -> dict:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(answers[name]) for name in _ANSWERS})
        (self.folder / "answers.npz").write_bytes(buffer.getvalue())
        manifest = {"layers": self.layers, "n": self.shape[0], "hidden": self.shape[1], "dtype": self.dtype,
                    "meta": meta}
        (self.folder / "manifest.json").write_text(json.dumps(manifest))
        try:
            os.rename(self.folder, self.final)
        except OSError:  # a redelivered task wrote it first: same content, keep that one
            if not (self.final / "manifest.json").is_file():
                raise
            shutil.rmtree(self.folder, ignore_errors=True)
        return {"path": str(self.final), **{k: manifest[k] for k in ("layers", "n", "hidden", "dtype")}}


def used_bytes(directory: Path) -> int:
    """Bytes of the files under `directory` (0 when it does not exist)."""
    total = 0
    for folder, _, names in os.walk(directory):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed meanwhile
                pass
    return total


def run_bytes(features, dtype: str) -> int:
    """Bytes the layer files of one run take in `dtype` (vision and language, every layer)."""
    layers, n = features.vision.shape[0], features.vision.shape[1]
    return layers * n * (features.vision.shape[2] + features.language.shape[2]) * np.dtype(dtype).itemsize


class FeatureStoreFull(OSError):
    """The feature folder's volume is full (ENOSPC) or over its quota (EDQUOT): HTTP 507; nothing of the
    write that failed is left behind."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def full_disk(error: OSError, what: str) -> FeatureStoreFull:
    """The FeatureStoreFull to raise for `error`, saying what is full and what to do."""
    return FeatureStoreFull(error.errno, f"the feature folder (PIDFLOW_FEATURE_DIR) is full: no space left "
                                         f"there for {what}, and nothing of it was kept. Free space on that volume "
                                         f"(delete uploads and analyses no longer needed) or give it more room, "
                                         f"then try again")


def save(job_id: str, run: str, features, settings: FeatureStoreSettings | None = None) -> bytes:
    """What goes into Redis for one run: a reference to files (PIDFLOW_FEATURE_DIR) or the npz bytes.
    FeatureStoreFull when the volume is full; a failed write leaves no folder behind."""
    settings = settings or env_settings()
    if settings.directory is None:
        return features.to_bytes()
    writer = None
    try:
        writer = RunWriter(settings.directory, job_id, run, settings.run_dtype(features))
        for layer in range(features.num_layers):
            writer.write_layer(features.vision[layer], features.language[layer])
        ref = writer.finish({name: getattr(features, name) for name in _ANSWERS}, features.meta)
    except BaseException as error:
        if writer is not None:
            shutil.rmtree(writer.folder, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS and not isinstance(error, FeatureStoreFull):
            raise full_disk(error, f"the {run} features") from error
        raise
    return REF_PREFIX + json.dumps(ref).encode()


def read_manifest(folder: Path) -> dict:
    """A finished run folder's manifest (layers, n, hidden, dtype, ...)."""
    return json.loads((folder / "manifest.json").read_text())


def reference(folder: Path, known: dict | None = None) -> bytes:
    """What `save` puts in Redis for a run folder RunWriter finished (e.g. after the folder was moved);
    `known`: the folder's manifest, when read beforehand (from an identical copy)."""
    manifest = known if known is not None else read_manifest(folder)
    ref = {"path": str(folder), **{key: manifest[key] for key in ("layers", "n", "hidden", "dtype")}}
    return REF_PREFIX + json.dumps(ref).encode()


def run_complete(folder: Path) -> bool:
    """Whether a run folder holds everything its manifest names (answers, each layer of both sources)."""
    try:
        layers = json.loads((folder / "manifest.json").read_text())["layers"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    names = {f"{layer:03d}.npy" for layer in range(layers)}
    return (folder / "answers.npz").is_file() and all(
        (folder / source).is_dir() and names <= {p.name for p in (folder / source).iterdir()}
        for source in ("vision", "language"))


def file_reference(path, run: str, sha256: str) -> bytes:
    """A reference to run `run` ("baseline" or "knockout") of a features file (pidcore.features.files) that
    stays where it is: a study's bring-your-own parts are analysed in place, never copied. `sha256`: the
    file's, computed once (loading does not hash the file again)."""
    if run not in ("baseline", "knockout"):
        raise ValueError(f"run must be baseline or knockout, got {run!r}")
    path = Path(path)
    info = {"path": str(path), "run": run, "sha256": sha256, "size": path.stat().st_size}
    return FILE_REF_PREFIX + json.dumps(info).encode()


@lru_cache(maxsize=128)
def _read_file(path: str, sha256: str, size: int, mtime_ns: int):
    """A features file read lazily (its layers stay on disk), once per worker process and file version, without
    checking every value again: the file was read whole and checked (finite values included) when its study
    part was planned, and a file that changed since is refused by `present` (size) or read again here (its
    modification time is part of the key). Checking every value of a 7B-shaped file costs about 3 CPU-s, which
    every analysis unit of a part would otherwise pay for every run it reads."""
    from pidcore.features.files import read_features

    return read_features(path, lazy=True, sha256=sha256, check_values=False)


def _file_ref(value: bytes) -> dict:
    return json.loads(value[len(FILE_REF_PREFIX):])


def present(value: bytes) -> bool:
    """Whether what `save` returned can still be loaded: npz bytes always, a reference while its files last
    (a features file's: while it is there with the size it had)."""
    if value.startswith(FILE_REF_PREFIX):
        try:
            ref = _file_ref(value)
            return Path(ref["path"]).stat().st_size == ref["size"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
    if not value.startswith(REF_PREFIX):
        return True
    try:
        return run_complete(Path(json.loads(value[len(REF_PREFIX):])["path"]))
    except (ValueError, KeyError, TypeError):
        return False


def load(value: bytes):
    """Features from what `save` put in Redis; layers of file-backed features are read on access."""
    from pidcore.extract.features import Features

    if value.startswith(FILE_REF_PREFIX):
        ref = _file_ref(value)
        if not present(value):
            raise FileNotFoundError(f"features file {Path(ref['path']).name} is missing or changed since the study "
                                    f"read it (is the folder on a volume every worker shares?)")
        stat = Path(ref["path"]).stat()
        found = _read_file(ref["path"], ref["sha256"], stat.st_size, stat.st_mtime_ns)
        # a shallow copy: a caller that replaces a field (with_baseline_target) leaves the cached run as it was
        return copy.copy(found.features if ref["run"] == "baseline" else found.knockout)
    if not value.startswith(REF_PREFIX):
        return Features.from_bytes(value)
    ref = json.loads(value[len(REF_PREFIX):])
    folder = Path(ref["path"])
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"feature files missing at {folder} (is PIDFLOW_FEATURE_DIR a volume every "
                                f"worker shares?)")
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "answers.npz", allow_pickle=False) as archive:
        answers = {name: archive[name] for name in _ANSWERS}
    shape = (manifest["layers"], manifest["n"], manifest["hidden"])
    return Features(vision=LayerStack(folder / "vision", *shape), language=LayerStack(folder / "language", *shape),
                    meta=manifest["meta"], **answers)


def remove(job_id: str, settings: FeatureStoreSettings | None = None) -> None:
    """Delete a job's feature files (after its result is written, or when it is deleted)."""
    settings = settings or env_settings()
    if settings.directory is not None and job_id and job_id.isalnum():
        shutil.rmtree(settings.directory / job_id, ignore_errors=True)


def _age_s(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _fields(value) -> list[str | None]:
    return [v.decode() if isinstance(v, bytes) else v for v in value]


def keep_reason(client, name: str, resume_s: int, now: float | None = None) -> str | None:
    """Why the sweep must keep the feature folder `name` (a reason), or None when it may go: a job's
    (<job id>) while the job is queued or running, a study part's (<study id>p<i>) while the study is
    queued or running or failed or cancelled less than `resume_s` ago. Names of neither kind are kept ("not ours")."""
    now = time.time() if now is None else now
    if JOB_FOLDER.fullmatch(name):
        (state,) = _fields(client.hmget(f"pidflow:job:{name}", ["state"]))
        return f"job {state}" if state in LIVE else None
    match = STUDY_FOLDER.fullmatch(name)
    if match:
        state, updated = _fields(client.hmget(f"pidflow:study:{match.group(1)}", ["state", "updated_at"]))
        if state in LIVE:
            return f"study {state}"
        if state in ("failed", "cancelled"):  # kept for a re-run that resumes it
            try:
                failed_s = now - float(updated)
            except (TypeError, ValueError):
                failed_s = 0.0
            if failed_s < resume_s:
                return f"study {state} {failed_s:.0f} s ago, kept {resume_s} s for a re-run"
        return None
    return "not ours"


def sweep(client, settings: FeatureStoreSettings | None = None, grace_s: float = SWEEP_GRACE_S) -> list[str]:
    """Remove the job and study feature folders that nothing needs any more (see the module's doc); the
    names removed. Uploads' folders (worker.uploads) and other names are left alone."""
    settings = settings or env_settings()
    root = settings.directory
    if root is None or not root.is_dir():
        return []
    now, removed = time.time(), []
    for folder in root.iterdir():
        if not folder.is_dir() or _age_s(folder, now) <= grace_s:
            continue
        if keep_reason(client, folder.name, settings.resume_s, now) is None:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
