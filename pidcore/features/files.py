"""Pooled-features files (npz, safetensors, .pt): read with clear errors, write, describe.

Schema (docs/features-format.md): `vision` and `language` of shape (layers, questions, hidden) (or one
array per layer, `vision.0`, `vision.1`, ...), `target` (questions, k) or (questions,); optional per
question `qids`, `tasks`, `questions` (texts), `answers` (gold), `predicted`, `p_correct`, `images`
(uint8 (questions, H, W[, 3|4])); optional `answer_set` (k,) and `meta` (JSON: model, language_pooling,
target). In safetensors the strings and `meta` live in the header's `__metadata__` as JSON.
The file's sha256 names it: its analyses run as model "features:<sha256>".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import zipfile
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pidcore.extract.features import Features

FORMATS = ("npz", "safetensors", "pt")
SUFFIXES = {".npz": "npz", ".safetensors": "safetensors", ".pt": "pt", ".pth": "pt"}
STRINGS = ("qids", "tasks", "questions", "answers", "predicted")
NUMBERS = ("vision", "language", "target", "p_correct", "images")
META_KEYS = ("model", "language_pooling", "target", "description", "knockout")
KNOCKOUT = "knockout."  # prefix of a knocked-out run's arrays: knockout.vision, knockout.language, ...
KNOCKOUT_KEYS = ("vision", "language", "target", "predicted", "p_correct")
TARGET_KINDS = ("logprobs", "hidden")
MIN_QUESTIONS = 2
MAX_MEMBERS = 4096  # zip members of an npz or a torch archive: a file with more is refused before it is parsed
MAX_NPY_HEADER = 10_000  # bytes of an .npy header (numpy's own default)
_LAYER_KEY = re.compile(r"^((?:knockout\.)?(?:vision|language))[./_](\d+)$")


class FeaturesFileError(ValueError):
    """The file is not a pooled-features file pidflow can analyse; the message lists what is wrong."""


@dataclass
class FeatureSet:
    """A checked features file: `features` (pidcore Features; states float32, or float16 as in the file), `images` (uint8 or None),
    `sha256` of the file's bytes, its `format`, and `knockout`: the knocked-out run's Features, or None."""

    features: Features
    images: np.ndarray | None
    sha256: str
    format: str
    knockout: Features | None = None

    @property
    def model(self) -> str:
        return f"features:{self.sha256}"

    def task_counts(self) -> dict[str, int]:
        tasks, counts = np.unique(self.features.tasks, return_counts=True)
        return {str(task): int(count) for task, count in zip(tasks, counts, strict=True)}

    def describe(self) -> dict:
        """JSON-ready summary: sizes, tasks, what is known (answers, images), the declared model."""
        f = self.features
        return {"id": self.sha256, "model": self.model, "format": self.format, "n_questions": f.n,
                "num_layers": f.num_layers, "vision_dim": int(f.vision.shape[2]),
                "language_dim": int(f.language.shape[2]), "target_dim": int(f.target.shape[1]),
                "tasks": self.task_counts(), "answers_known": bool(np.any(f.predicted != "")),
                "images": self.images is not None, "source_model": f.meta.get("source_model"),
                "language_pooling": f.meta["language_pooling"], "target": f.meta["target"],
                "knockout": self.knockout.meta["knockout"] if self.knockout is not None else None}


# -- reading ----------------------------------------------------------------------------------------------

def read_features(source, *, filename: str | None = None, max_bytes: int | None = None, lazy: bool = False,
                  sha256: str | None = None, check_values: bool = True) -> FeatureSet:
    """Read and check a features file from a path or its bytes; FeaturesFileError naming every problem.

    `max_bytes` bounds what the file's arrays decode to: the sizes every format declares (zip members,
    .npy headers, safetensors headers, torch archive members) are added up and checked against it before
    anything is inflated. None: no bound (a local file of your own).

    `lazy` (a path only): the file's arrays are not loaded; each is read one index of its first axis (a
    layer of `vision`, an image) at a time by positioned reads, so checking and storing the file holds about
    one layer whatever its size (safetensors; npz, whose deflated members are inflated a chunk at a time
    into unlinked temporary files beside the file; .pt, whose tensors are read from their stored bytes: a
    restricted unpickler reads only the pickle, and hands what it does not know to torch.load, mapped). `sha256`: the file's hash when the caller computed it already.
    `check_values=False` skips the check that every value is finite (about 3 CPU-s for a 7B-shaped file), for a
    file the caller checked whole before (e.g. a worker re-reading a study part's file checked when the part
    was planned); every other check still runs."""
    token = _CHECK_VALUES.set(check_values)
    try:
        return _read_features(source, filename, max_bytes, lazy, sha256)
    finally:
        _CHECK_VALUES.reset(token)


#: Whether _non_finite looks at every value (read_features(check_values=...); per thread and task).
_CHECK_VALUES: ContextVar[bool] = ContextVar("check_values", default=True)


def _read_features(source, filename, max_bytes, lazy, sha256) -> FeatureSet:
    if lazy and isinstance(source, str | Path):
        return _read_lazily(Path(source).expanduser(), filename, max_bytes, sha256)
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no features file {path}")
        data, filename = path.read_bytes(), filename or path.name
    elif isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        raise TypeError(f"read_features takes a path or bytes, got {type(source).__name__}")
    kind = detect_format(data, filename)
    reader = {"npz": _read_npz, "safetensors": _read_safetensors, "pt": _read_pt}[kind]
    raw = reader(data, _Budget(max_bytes))
    sha = hashlib.sha256(data).hexdigest()
    features, images, knockout = _check(raw, sha)
    return FeatureSet(features=features, images=images, sha256=sha, format=kind, knockout=knockout)


def detect_format(data: bytes, filename: str | None = None) -> str:
    """"npz", "safetensors" or "pt", from the file name's suffix or else the bytes themselves."""
    if filename and Path(filename).suffix.lower() in SUFFIXES:
        return SUFFIXES[Path(filename).suffix.lower()]
    if data[:4] == b"PK\x03\x04":
        names = _zip_archive(data, "not a features file").namelist()
        return "pt" if any(name.endswith("data.pkl") for name in names) else "npz"
    if len(data) > 9 and data[8:9] == b"{":
        return "safetensors"
    if data[:1] == b"\x80":
        return "pt"
    raise FeaturesFileError("not a features file: expected npz, safetensors or a torch .pt file "
                            f"(name it *.npz, *.safetensors or *.pt){f'; got {filename!r}' if filename else ''}")


class _Budget:
    """Adds up the bytes a file's arrays declare; FeaturesFileError once they pass `max_bytes`."""

    def __init__(self, max_bytes: int | None):
        self.max_bytes, self.used = max_bytes, 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += int(nbytes)
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise FeaturesFileError(
                f"features file too large once decoded: {what} declares {int(nbytes):,} bytes ({self.used:,} in "
                f"all so far), over this reader's bound of {self.max_bytes:,} bytes; nothing was inflated "
                f"(a compressed file may decode to at most that: send fewer layers or questions)")


def _zip_archive(data, what: str) -> zipfile.ZipFile:
    """The zip archive in `data` (bytes or a binary file open for reading), its member count checked (end
    record) before its directory is parsed."""
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    try:
        end = zipfile._EndRecData(stream)  # noqa: SLF001 - the end record, read before the whole directory
        if end is None:
            raise zipfile.BadZipFile("no end of central directory record")
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:  # noqa: SLF001
            raise FeaturesFileError(f"{what}: a zip archive of {end[zipfile._ECD_ENTRIES_TOTAL]:,} members; "  # noqa: SLF001
                                    f"at most {MAX_MEMBERS} are read")
        return zipfile.ZipFile(stream)
    except FeaturesFileError:
        raise
    except Exception as error:  # noqa: BLE001 - a broken directory fails in many ways (struct, unicode, EOF)
        raise FeaturesFileError(f"{what}: a broken zip archive ({error})") from error


def _read_npz(data: bytes, budget: _Budget) -> dict:
    if data[:2] != b"PK":
        raise FeaturesFileError("not a readable npz archive: it is not a zip file (write it with numpy.savez)")
    archive = _zip_archive(data, "not a readable npz archive")
    members = archive.infolist()
    for info in members:  # every declared size, before any member is inflated
        budget.take(info.file_size, f"npz member {info.filename!r}")
    try:
        raw = {info.filename.removesuffix(".npy"): _npy_member(archive, info) for info in members}
    except FeaturesFileError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt archive fails in many ways (zlib, zip, EOF, unicode)
        raise FeaturesFileError(f"not a readable npz archive: {error}") from error
    for name in ("meta", "answer_set", *STRINGS, KNOCKOUT + "predicted"):
        if name in raw and raw[name].dtype.kind in "US":
            raw[name] = raw[name].tolist()
    if isinstance(raw.get("meta"), str):
        raw["meta"] = _json(raw["meta"], "meta")
    return raw


def _npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member, its header checked against the member's declared size before its data is read."""
    from numpy.lib import format as npy

    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise FeaturesFileError(f"npz member {info.filename!r}: .npy format version {version} is not read "
                                    f"(write it with numpy.savez)")
        header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = header(member, max_header_size=MAX_NPY_HEADER)
        if dtype.hasobject:
            raise FeaturesFileError(f"npz member {info.filename!r} holds an object array: object arrays are not "
                                    f"accepted (nothing is unpickled; save strings as str arrays)")
        declared, held = math.prod(shape) * dtype.itemsize, info.file_size - member.tell()
        if declared != held:
            raise FeaturesFileError(f"npz member {info.filename!r}: its .npy header declares {shape} {dtype} "
                                    f"({declared:,} bytes) but the member holds {held:,}")
        member.seek(0)
        return npy.read_array(member, allow_pickle=False, max_header_size=MAX_NPY_HEADER)


def _read_safetensors(data: bytes, budget: _Budget) -> dict:
    from safetensors.torch import load

    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        _take_safetensors(header, budget)
        tensors = load(data)
    except FeaturesFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file
        raise FeaturesFileError(f"not a readable safetensors file: {error}") from error
    raw = {name: _numpy(value) for name, value in tensors.items()}
    for name, text in (header.get("__metadata__") or {}).items():
        raw[name] = _json(text, f"__metadata__[{name!r}]")
    return raw


def _take_safetensors(header: dict, budget: _Budget) -> None:
    """The header's declared tensor sizes (bfloat16 twice: it is read as float32)."""
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        start, end = entry.get("data_offsets") or (0, 0)
        if isinstance(start, int) and isinstance(end, int):
            budget.take((end - start) * (2 if entry.get("dtype") == "BF16" else 1), f"safetensors tensor {name!r}")


def _read_pt(data: bytes, budget: _Budget) -> dict:
    import torch

    _take_torch_archive(data, budget)
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        raise FeaturesFileError(f"not a readable torch file (loaded with weights_only=True: tensors, lists, "
                                f"dicts, strings and numbers only): {error}") from error
    if not isinstance(loaded, dict):
        raise FeaturesFileError(f"a .pt features file must hold a dict, got {type(loaded).__name__}")
    raw = {}
    for name, value in loaded.items():
        if name in ("vision", "language", KNOCKOUT + "vision", KNOCKOUT + "language") and isinstance(value, list | tuple) and value and all(
                isinstance(v, torch.Tensor) for v in value):
            value = torch.stack(list(value))
        raw[str(name)] = _numpy(value) if isinstance(value, torch.Tensor) else value
    return raw


def _take_torch_archive(data: bytes, budget: _Budget) -> None:
    """torch.save's zip format with stored (uncompressed) members only, so nothing inflates; their sizes."""
    if data[:4] != b"PK\x03\x04":
        raise FeaturesFileError("a .pt features file must be in torch's zip format (torch.save, torch 1.6 or "
                                "later); the legacy format is not read")
    for info in _zip_archive(data, "not a readable torch file").infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise FeaturesFileError(f"not a readable torch file: member {info.filename!r} is compressed "
                                    f"(torch.save stores its members uncompressed)")
        budget.take(info.file_size, f"torch archive member {info.filename!r}")


def _numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def _json(text, where: str):
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FeaturesFileError(f"{where} is not valid JSON: {error}") from error


# -- reading a file on disk lazily (uploads: memory independent of the file's size) -----------------------

class LazyArray:
    """An array read one index of its first axis at a time (`a[i]`); `np.asarray(a)` reads all of it.
    Subclasses give `shape`, `dtype` and `_row(i)`."""

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        if isinstance(key, int | np.integer):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"index {key} outside 0..{self.shape[0] - 1}")
            return self._row(index)
        if isinstance(key, tuple) and key and isinstance(key[0], int | np.integer):
            return self[key[0]][key[1:]]
        if isinstance(key, slice):
            return np.stack([self._row(i) for i in range(self.shape[0])[key]]) if range(self.shape[0])[key] \
                else np.empty((0, *self.shape[1:]), self.dtype)
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def astype(self, dtype, copy: bool = True) -> LazyArray:
        return _Converted(self, np.dtype(dtype))

    def _row(self, index: int) -> np.ndarray:
        raise NotImplementedError


class FileArray(LazyArray):
    """A C-ordered array stored at `offset` in the file at `path` (dtype `stored`, "bf16" for bfloat16:
    read as float32), read by positioned reads: nothing mapped, only the row asked for held."""

    def __init__(self, path, offset: int, shape: tuple, stored):
        """`path`: a file's path, or a binary file object kept open (an unlinked temporary file)."""
        self.file = None if isinstance(path, str | Path) else path
        self.path = Path(path) if self.file is None else None
        self.offset, self.shape = int(offset), tuple(int(x) for x in shape)
        self.bf16 = stored == "bf16"
        self.stored = np.dtype("<u2") if self.bf16 else np.dtype(stored)
        self.dtype = np.dtype(np.float32) if self.bf16 else self.stored

    def _row(self, index: int) -> np.ndarray:
        count = math.prod(self.shape[1:])
        start = self.offset + index * count * self.stored.itemsize
        if self.file is not None:
            data = os.pread(self.file.fileno(), count * self.stored.itemsize, start)
            values = np.frombuffer(data, dtype=self.stored, count=len(data) // self.stored.itemsize).copy()
        else:
            with open(self.path, "rb") as file:
                file.seek(start)
                values = np.fromfile(file, dtype=self.stored, count=count)
        if values.size != count:
            raise FeaturesFileError(f"features file: truncated (row {index} of an array of shape {self.shape} "
                                    f"ends past the end of the file)")
        if self.bf16:
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values.reshape(self.shape[1:])


class _Converted(LazyArray):
    def __init__(self, source: LazyArray, dtype: np.dtype):
        self.source, self.shape, self.dtype = source, source.shape, dtype

    def _row(self, index: int) -> np.ndarray:
        return self.source[index].astype(self.dtype)


class _Stacked(LazyArray):
    """Per-layer arrays (vision.0, vision.1, ...) seen as one (layers, ...) array."""

    def __init__(self, arrays: list):
        self.arrays, self.shape = arrays, (len(arrays), *arrays[0].shape)
        self.dtype = np.result_type(*(a.dtype for a in arrays))

    def _row(self, index: int) -> np.ndarray:
        return np.asarray(self.arrays[index]).astype(self.dtype, copy=False)


class _TensorRows(LazyArray):
    """A (memory-mapped) torch tensor read a row at a time."""

    def __init__(self, tensor):
        self.tensor, self.shape = tensor, tuple(tensor.shape)
        self.dtype = np.dtype(np.float32) if str(tensor.dtype) == "torch.bfloat16" else _numpy(tensor[:0]).dtype

    def _row(self, index: int) -> np.ndarray:
        return _numpy(self.tensor[index]).copy()


LAZY_MIN_BYTES = 1 << 16  # smaller arrays are simply loaded
_SAFETENSORS_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "bf16", "U8": "u1", "I8": "i1",
                       "I16": "<i2", "I32": "<i4", "I64": "<i8", "U16": "<u2", "U32": "<u4", "U64": "<u8",
                       "BOOL": "?"}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_lazily(path: Path, filename: str | None, max_bytes: int | None, sha: str | None) -> FeatureSet:
    if not path.is_file():
        raise FileNotFoundError(f"no features file {path}")
    with open(path, "rb") as file:
        head = file.read(64)
    if head[:4] == b"PK\x03\x04" and not (filename and Path(filename).suffix.lower() in SUFFIXES):
        with open(path, "rb") as file:
            names = _zip_archive(file, "not a features file").namelist()
        kind = "pt" if any(name.endswith("data.pkl") for name in names) else "npz"
    else:
        kind = detect_format(head, filename or path.name)
    reader = {"npz": _lazy_npz, "safetensors": _lazy_safetensors, "pt": _lazy_pt}[kind]
    raw = reader(path, _Budget(max_bytes))
    sha = sha or file_sha256(path)
    features, images, knockout = _check(raw, sha)
    return FeatureSet(features=features, images=images, sha256=sha, format=kind, knockout=knockout)


def _lazy_safetensors(path: Path, budget: _Budget) -> dict:
    size_on_disk = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (size,) = struct.unpack("<Q", file.read(8))
            if size > min(size_on_disk, 100 << 20):
                raise ValueError(f"a header of {size:,} bytes")
            header = json.loads(file.read(size))
        _take_safetensors(header, budget)
    except FeaturesFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file
        raise FeaturesFileError(f"not a readable safetensors file: {error}") from error
    raw, base = {}, 8 + size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            stored = _SAFETENSORS_DTYPES[entry["dtype"]]
            shape, (start, end) = tuple(int(x) for x in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as error:
            raise FeaturesFileError(f"not a readable safetensors file: tensor {name!r}: {error}") from error
        itemsize = 2 if stored == "bf16" else np.dtype(stored).itemsize
        if end - start != math.prod(shape) * itemsize or base + end > size_on_disk:
            raise FeaturesFileError(f"not a readable safetensors file: tensor {name!r} declares {shape} "
                                    f"{entry['dtype']} but holds bytes {start}..{end} of a {size_on_disk:,}-byte file")
        array = FileArray(path, base + start, shape, stored)
        raw[name] = array if array.nbytes >= LAZY_MIN_BYTES and shape else np.asarray(array) if shape else \
            np.fromfile(path, dtype=array.stored, count=1, offset=base + start).reshape(())
    for name, text in (header.get("__metadata__") or {}).items():
        raw[name] = _json(text, f"__metadata__[{name!r}]")
    return raw


def _lazy_npz(path: Path, budget: _Budget) -> dict:

    with open(path, "rb") as file:
        if file.read(2) != b"PK":
            raise FeaturesFileError("not a readable npz archive: it is not a zip file (write it with numpy.savez)")
        archive = _zip_archive(file, "not a readable npz archive")
        members = archive.infolist()
        for info in members:
            budget.take(info.file_size, f"npz member {info.filename!r}")
        raw = {}
        try:
            for info in members:
                name = info.filename.removesuffix(".npy")
                lazy = None
                if info.compress_type == zipfile.ZIP_STORED and info.file_size >= LAZY_MIN_BYTES:
                    file.seek(info.header_offset)
                    local = file.read(30)
                    start = info.header_offset + 30 + struct.unpack("<H", local[26:28])[0] + \
                        struct.unpack("<H", local[28:30])[0]
                    shape, fortran, dtype, offset = _npy_member_header(archive, info)
                    if not fortran and shape and dtype.kind in "fiub" and not dtype.hasobject:
                        lazy = FileArray(path, start + offset, shape, dtype)
                elif info.file_size >= LAZY_MIN_BYTES:  # deflated (savez_compressed): inflated to a temporary file
                    lazy = _inflated(archive, info, path.parent)
                raw[name] = lazy if lazy is not None else _npy_member(archive, info)
        except FeaturesFileError:
            raise
        except Exception as error:  # noqa: BLE001 - a corrupt archive fails in many ways
            raise FeaturesFileError(f"not a readable npz archive: {error}") from error
    for name in ("meta", "answer_set", *STRINGS, KNOCKOUT + "predicted"):
        if name in raw and not isinstance(raw[name], LazyArray) and raw[name].dtype.kind in "US":
            raw[name] = raw[name].tolist()
    if isinstance(raw.get("meta"), str):
        raw["meta"] = _json(raw["meta"], "meta")
    return raw


def _npy_member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple:
    """(shape, fortran order, dtype, data offset) of an npz member's .npy header, checked against the member's
    size before anything is inflated (FeaturesFileError when they disagree)."""
    from numpy.lib import format as npy

    with archive.open(info) as member:
        version = npy.read_magic(member)
        header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = header(member, max_header_size=MAX_NPY_HEADER)
        offset = member.tell()
    declared = math.prod(shape) * dtype.itemsize
    if declared != info.file_size - offset:
        raise FeaturesFileError(f"npz member {info.filename!r}: its .npy header declares {shape} {dtype} "
                                f"({declared:,} bytes) but the member holds {info.file_size - offset:,}")
    return shape, fortran, dtype, offset


def _inflated(archive: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path):
    """A deflated .npy member inflated a chunk at a time into an unlinked temporary file beside the upload (no
    name on disk: it goes when the array does), read lazily from there; None for arrays read whole (strings,
    Fortran order)."""
    import shutil
    import tempfile

    shape, fortran, dtype, offset = _npy_member_header(archive, info)
    declared = math.prod(shape) * dtype.itemsize
    if fortran or not shape or dtype.kind not in "fiub" or dtype.hasobject:
        return None
    try:
        spill = tempfile.TemporaryFile(dir=folder if os.access(folder, os.W_OK) else None)
    except OSError:
        spill = tempfile.TemporaryFile()
    with archive.open(info) as member:
        member.seek(offset)
        shutil.copyfileobj(member, spill, 1 << 20)
    if spill.tell() != declared:
        raise FeaturesFileError(f"npz member {info.filename!r}: inflated to {spill.tell():,} bytes, its header "
                                f"declares {declared:,}")
    return FileArray(spill, 0, shape, dtype)


_TORCH_STORAGES = {"HalfStorage": "<f2", "FloatStorage": "<f4", "DoubleStorage": "<f8", "BFloat16Storage": "bf16",
                   "ByteStorage": "u1", "CharStorage": "i1", "ShortStorage": "<i2", "IntStorage": "<i4",
                   "LongStorage": "<i8", "BoolStorage": "?"}


class _NotPlain(Exception):
    """A torch archive this reader does not parse itself (then torch.load reads it, memory-mapped)."""


def _lazy_pt(path: Path, budget: _Budget) -> dict:
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":
            raise FeaturesFileError("a .pt features file must be in torch's zip format (torch.save, torch 1.6 or "
                                    "later); the legacy format is not read")
        file.seek(0)
        archive = _zip_archive(file, "not a readable torch file")
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise FeaturesFileError(f"not a readable torch file: member {info.filename!r} is compressed "
                                        f"(torch.save stores its members uncompressed)")
            budget.take(info.file_size, f"torch archive member {info.filename!r}")
        try:
            loaded = _torch_archive_lazily(path, file, archive)
        except _NotPlain:
            loaded = None
    if loaded is None:  # something other than plain tensors, lists, dicts and strings: torch reads it (mmap)
        loaded = _torch_load_mapped(path)
    if not isinstance(loaded, dict):
        raise FeaturesFileError(f"a .pt features file must hold a dict, got {type(loaded).__name__}")
    raw = {}
    for name, value in loaded.items():
        if isinstance(value, list | tuple) and value and all(isinstance(v, LazyArray | np.ndarray) for v in value) and \
                name in ("vision", "language", KNOCKOUT + "vision", KNOCKOUT + "language"):
            value = _Stacked([v if isinstance(v, LazyArray) else np.asarray(v) for v in value])
        elif isinstance(value, LazyArray) and value.nbytes < LAZY_MIN_BYTES:
            value = np.asarray(value)
        raw[str(name)] = value
    return raw


def _torch_archive_lazily(path: Path, file, archive: zipfile.ZipFile):
    """The object in torch.save's archive with every contiguous tensor as a FileArray over its stored bytes
    (nothing read but the pickle); only torch's tensor rebuild, its storage types and OrderedDict are
    admitted (a restricted unpickler), _NotPlain for anything else."""
    import collections
    import pickle

    names = archive.namelist()
    pickles = [name for name in names if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise _NotPlain
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() != b"little":
        raise _NotPlain

    def member_start(name: str) -> int:
        info = archive.getinfo(name)
        file.seek(info.header_offset)
        local = file.read(30)
        return info.header_offset + 30 + struct.unpack("<H", local[26:28])[0] + struct.unpack("<H", local[28:30])[0]

    def rebuild(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
        stored, key = storage
        size, stride = tuple(int(x) for x in size), tuple(int(x) for x in stride)
        itemsize = 2 if stored == "bf16" else np.dtype(stored).itemsize
        contiguous = tuple(int(math.prod(size[i + 1:])) for i in range(len(size)))
        name = f"{prefix}data/{key}"
        if name not in names:
            raise FeaturesFileError(f"not a readable torch file: its tensor storage {key!r} is missing")
        start = member_start(name) + int(storage_offset) * itemsize
        span = 1 + sum((n - 1) * abs(st) for n, st in zip(size, stride, strict=True)) if math.prod(size) else 0
        if min(stride, default=0) < 0 or (int(storage_offset) + span) * itemsize > archive.getinfo(name).file_size:
            raise FeaturesFileError(f"not a readable torch file: a tensor {size} runs past its storage {key!r}")
        if math.prod(size) and stride != contiguous and len(size) > 1:  # a strided view: read its span, copied
            flat = np.asarray(FileArray(path, start, (span,), stored))
            return np.lib.stride_tricks.as_strided(flat, size, tuple(st * flat.itemsize for st in stride)).copy()
        return FileArray(path, start, size, stored) if size else np.asarray(FileArray(path, start, (1,), stored))[0]

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in _TORCH_STORAGES:
                return _TORCH_STORAGES[name]
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise _NotPlain

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in _TORCH_STORAGES.values()):
                raise _NotPlain
            return pid[1], str(pid[2])

    try:
        return Restricted(io.BytesIO(archive.read(pickles[0]))).load()
    except (_NotPlain, FeaturesFileError):
        raise
    except Exception as error:  # noqa: BLE001 - a broken pickle fails in many ways
        raise FeaturesFileError(f"not a readable torch file: {error}") from error


def _torch_load_mapped(path: Path):
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        raise FeaturesFileError(f"not a readable torch file (loaded with weights_only=True: tensors, lists, "
                                f"dicts, strings and numbers only): {error}") from error

    def lazy(value):
        if isinstance(value, torch.Tensor):
            return _TensorRows(value) if value.dim() else _numpy(value)
        if isinstance(value, list | tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            return [lazy(v) for v in value]
        return value
    return {name: lazy(value) for name, value in loaded.items()} if isinstance(loaded, dict) else loaded


# -- checking ---------------------------------------------------------------------------------------------

def _stacked(raw: dict, name: str, problems: list[str]) -> np.ndarray | None:
    per_layer = {int(m.group(2)): key for key in raw if (m := _LAYER_KEY.match(key)) and m.group(1) == name}
    if name in raw and per_layer:
        problems.append(f"give either {name!r} or {name}.0, {name}.1, ..., not both")
        return None
    if per_layer:
        if sorted(per_layer) != list(range(len(per_layer))):
            problems.append(f"per-layer keys {name}.<i> must run 0..L-1, got layers {sorted(per_layer)}")
            return None
        arrays = [_array(raw[per_layer[i]]) for i in range(len(per_layer))]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            problems.append(f"{name}.<i> arrays differ in shape: {sorted(shapes)}")
            return None
        if any(isinstance(a, LazyArray) for a in arrays):
            return _Stacked(arrays)
        return np.stack(arrays)
    if name not in raw:
        problems.append(f"missing {name!r}: pooled {name} states, (layers, questions, hidden) "
                        f"(or one (questions, hidden) array per layer: {name}.0, {name}.1, ...)")
        return None
    return _array(raw[name])


def _array(value):
    """An ndarray, or the LazyArray itself (read a row at a time later)."""
    return value if isinstance(value, LazyArray) else np.asarray(value)


def _float_array(value: np.ndarray, name: str, ndim: int, problems: list[str]) -> np.ndarray | None:
    if value.dtype.kind not in "fiub":
        problems.append(f"{name} must hold numbers, got dtype {value.dtype}")
        return None
    if value.ndim != ndim:
        axes = "(layers, questions, hidden)" if ndim == 3 else "(questions, k)"
        problems.append(f"{name} must be {axes}, got shape {value.shape}")
        return None
    if value.dtype not in (np.float16, np.float32):  # float16 stays float16 (half the memory); the rest float32
        value = value.astype(np.float32)
    count, where = _non_finite(value)
    if count:  # said, and the array kept so that the checks of its shape still run (every problem at once)
        problems.append(f"{name} has {count} NaN or infinite value(s) (first at index {where})")
    return value


def _non_finite(value) -> tuple[int, tuple | None]:
    """How many values are NaN or infinite and the index of the first; a LazyArray row by row. (0, None) without
    looking when read_features was told check_values=False."""
    if not _CHECK_VALUES.get():
        return 0, None
    if not isinstance(value, LazyArray):
        bad = ~np.isfinite(value)
        return int(bad.sum()), (tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else None)
    count, where = 0, None
    for row in range(value.shape[0]):
        bad = ~np.isfinite(value[row])
        if bad.any():
            count += int(bad.sum())
            where = where or (row, *(int(i) for i in np.argwhere(bad)[0]))
    return count, where


def _strings(raw: dict, name: str, n: int | None, problems: list[str]) -> np.ndarray | None:
    if name not in raw:
        return None
    value = raw[name]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                                      for v in value):
        problems.append(f"{name} must be a list of strings")
        return None
    if n is not None and len(value) != n:
        problems.append(f"{name} has {len(value)} entries for {n} questions")
        return None
    return np.array([str(v) for v in value], dtype=str)


def _meta(raw: dict, problems: list[str]) -> dict:
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        problems.append(f"meta must be a JSON object, got {type(meta).__name__}")
        return {}
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        problems.append(f"unknown meta key(s) {unknown}; known: {', '.join(META_KEYS)}")
    for key in META_KEYS:
        if key in meta and key != "knockout" and not isinstance(meta[key], str):
            problems.append(f"meta.{key} must be a string")
    if meta.get("language_pooling", "mean") not in ("mean", "last"):
        problems.append(f"meta.language_pooling must be 'mean' or 'last', got {meta['language_pooling']!r}")
    if "target" in meta and meta["target"] not in TARGET_KINDS:
        problems.append(f"meta.target must be one of {', '.join(TARGET_KINDS)}, got {meta['target']!r}")
    return meta


def _run_arrays(raw: dict, prefix: str, problems: list[str]):
    """vision, language, target of one run (prefix "" or "knockout."); None where missing or bad."""
    vision = _stacked(raw, prefix + "vision", problems)
    language = _stacked(raw, prefix + "language", problems)
    vision = None if vision is None else _float_array(vision, prefix + "vision", 3, problems)
    language = None if language is None else _float_array(language, prefix + "language", 3, problems)
    target = None
    if prefix + "target" not in raw:
        problems.append(f"missing '{prefix}target': (questions, k) or (questions,) values of Y per question")
    else:
        target = np.asarray(raw[prefix + "target"])
        target = _float_array(target[:, None] if target.ndim == 1 else target, prefix + "target", 2, problems)
    if vision is not None and language is not None:
        if vision.shape[0] != language.shape[0]:
            problems.append(f"{prefix}vision has {vision.shape[0]} layers, {prefix}language {language.shape[0]}")
        if vision.shape[1] != language.shape[1]:
            problems.append(f"{prefix}vision has {vision.shape[1]} questions, {prefix}language {language.shape[1]}")
    return vision, language, target


def _check(raw: dict, sha: str) -> tuple[Features, np.ndarray | None, Features | None]:
    problems: list[str] = []
    known = {*NUMBERS, *STRINGS, "answer_set", "meta", *(KNOCKOUT + key for key in KNOCKOUT_KEYS)}
    unknown = sorted(key for key in raw if key not in known and not _LAYER_KEY.match(key))
    if unknown:
        problems.append(f"unknown key(s) {unknown}")
    vision, language, target = _run_arrays(raw, "", problems)
    n = vision.shape[1] if vision is not None else language.shape[1] if language is not None else None
    if target is not None and n is not None and target.shape[0] != n:
        problems.append(f"target has {target.shape[0]} rows for {n} questions")
    if n is not None and n < MIN_QUESTIONS:
        problems.append(f"only {n} question(s); need at least {MIN_QUESTIONS}")
    strings = {name: _strings(raw, name, n, problems) for name in STRINGS}
    answer_set = _strings(raw, "answer_set", None, problems)
    p_correct = _p_correct(raw, "p_correct", n, problems)
    images = _images(raw, n, problems)
    meta = _meta(raw, problems)
    if strings["qids"] is not None:
        problems += _id_problems(strings["qids"])
    if answer_set is not None and target is not None and len(answer_set) != target.shape[1]:
        problems.append(f"answer_set has {len(answer_set)} answers but target has {target.shape[1]} columns")
    knocked = _knockout_run(raw, meta, (vision, language, target), problems)
    if problems:
        raise FeaturesFileError("features file: " + "; ".join(problems))
    features = _features(vision, language, target, strings, answer_set, p_correct, meta, sha, images is not None)
    knockout = None
    if knocked is not None:
        k_vision, k_language, k_target, k_predicted, k_p_correct = knocked
        knockout = _features(k_vision, k_language, k_target, {**strings, "predicted": k_predicted}, answer_set,
                             k_p_correct, meta, sha, images is not None, knockout=meta["knockout"])
    return features, images, knockout


def _knockout_run(raw: dict, meta: dict, baseline, problems: list[str]):
    """The knocked-out run (arrays under "knockout.", its window in meta.knockout), checked against the
    baseline's shapes; None when the file has none."""
    present = any(key.startswith(KNOCKOUT) for key in raw)
    if "knockout" in meta and not present:
        problems.append("meta.knockout is set but there are no knockout.vision / knockout.language / "
                        "knockout.target arrays")
    if not present:
        return None
    spec = meta.get("knockout")
    vision, language, target = _run_arrays(raw, KNOCKOUT, problems)
    for name, ours, theirs in (("vision", vision, baseline[0]), ("language", language, baseline[1]),
                               ("target", target, baseline[2])):
        if ours is not None and theirs is not None and ours.shape != theirs.shape:
            problems.append(f"knockout.{name} has shape {ours.shape}, {name} {theirs.shape}")
    n = baseline[0].shape[1] if baseline[0] is not None else None
    predicted = _strings(raw, KNOCKOUT + "predicted", n, problems)
    p_correct = _p_correct(raw, KNOCKOUT + "p_correct", n, problems)
    layers = baseline[0].shape[0] if baseline[0] is not None else None
    problems += _window_problems(spec, layers)
    return vision, language, target, predicted, p_correct


def _window_problems(spec, layers: int | None) -> list[str]:
    from pidcore.extract.edges import EDGES

    if not isinstance(spec, dict) or set(spec) != {"edges", "layers"}:
        return ['a knockout run needs meta.knockout = {"edges": [...], "layers": [first, last]} (the edges cut '
                'and the decoder layers, inclusive)']
    problems = []
    edges, window = spec["edges"], spec["layers"]
    if not isinstance(edges, list) or not edges or any(edge not in EDGES for edge in edges):
        problems.append(f"meta.knockout.edges must be a non-empty list of {', '.join(EDGES)}, got {edges!r}")
    if (not isinstance(window, list) or len(window) != 2 or not all(isinstance(x, int) for x in window)
            or not 0 <= window[0] <= window[1] or (layers is not None and window[1] > layers - 2)):
        problems.append(f"meta.knockout.layers must be [first, last] decoder layers with 0 <= first <= last <= "
                        f"{'L - 2' if layers is None else layers - 2} (layer i of the file is the output of decoder "
                        f"layer i - 1), got {window!r}")
    return problems


def _p_correct(raw: dict, name: str, n: int | None, problems: list[str]) -> np.ndarray | None:
    if name not in raw:
        return None
    try:
        value = np.asarray(raw[name], dtype=float).reshape(-1)
    except (TypeError, ValueError):
        problems.append(f"{name} must hold numbers (probabilities)")
        return None
    if n is not None and len(value) != n:
        problems.append(f"{name} has {len(value)} entries for {n} questions")
    elif not np.all((value >= 0) & (value <= 1)):
        problems.append(f"{name} must be probabilities in [0, 1]")
    return value


def _images(raw: dict, n: int | None, problems: list[str]) -> np.ndarray | None:
    if "images" not in raw:
        return None
    images = _array(raw["images"])
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
        problems.append(f"images must be uint8 (questions, H, W) or (questions, H, W, 1|3|4), got {images.dtype} "
                        f"{images.shape}")
        return None
    if n is not None and images.shape[0] != n:
        problems.append(f"images has {images.shape[0]} entries for {n} questions")
        return None
    return images


def _id_problems(qids: np.ndarray) -> list[str]:
    problems = []
    if len(set(qids.tolist())) != len(qids):
        problems.append("qids must be unique")
    if any("/" in q or not q for q in qids.tolist()):
        problems.append("qids must be non-empty and contain no '/' (they appear in URLs)")
    return problems


def _features(vision, language, target, strings, answer_set, p_correct, meta, sha, has_images,
              knockout: dict | None = None) -> Features:
    n = vision.shape[1]
    qids = strings["qids"] if strings["qids"] is not None else np.array([f"q{i}" for i in range(n)])
    blank = np.full(n, "", dtype=object).astype(str)
    answers = strings["answers"] if strings["answers"] is not None else blank
    predicted = strings["predicted"] if strings["predicted"] is not None else blank
    kind = meta.get("target") or ("logprobs" if answer_set is not None else "hidden")
    if answer_set is None:
        answer_set = np.array([], dtype=str)
    if p_correct is None:
        p_correct = _derived_p_correct(target, answers, answer_set, kind)
    correct = (predicted == answers) & (predicted != "")
    image_ids = np.array([f"upload.{sha}.{i}" for i in range(n)]) if has_images else blank
    model = {"name": f"features:{sha}", "revision": f"sha256:{sha}", "num_layers": vision.shape[0] - 1,
             "hidden_size": int(vision.shape[2]), "source_model": meta.get("model")}
    return Features(vision=vision, language=language, target=target, qids=qids,
                    tasks=strings["tasks"] if strings["tasks"] is not None else np.full(n, "all"),
                    answers=answers, predicted=predicted, p_correct=p_correct.astype(np.float64), correct=correct,
                    answer_set=answer_set, questions=strings["questions"] if strings["questions"] is not None
                    else blank, image_ids=image_ids,
                    meta={"model": model, "target": kind, "language_pooling": meta.get("language_pooling", "mean"),
                          "knockout": knockout, "source_model": meta.get("model"),
                          "description": meta.get("description")})


def _derived_p_correct(target, answers, answer_set, kind) -> np.ndarray:
    """exp(target[gold]) when the target is answer-set log-probabilities and the gold answer is in the set,
    else NaN (unknown)."""
    p = np.full(len(answers), np.nan)
    if kind != "logprobs" or len(answer_set) != target.shape[1]:
        return p
    index = {answer: i for i, answer in enumerate(answer_set.tolist())}
    for row, answer in enumerate(answers.tolist()):
        if answer in index:
            p[row] = float(np.exp(target[row, index[answer]]))
    return p


# -- writing ----------------------------------------------------------------------------------------------

def write_features(path, *, vision, language, target, qids=None, tasks=None, questions=None, answers=None,
                   predicted=None, p_correct=None, images=None, answer_set=None, meta: dict | None = None,
                   knockout: dict | None = None, format: str | None = None) -> str:  # noqa: A002 - the format
    """Write a features file (npz, safetensors or pt: from `format` or the path's suffix), check it by
    reading it back, and return its sha256. vision, language: (layers, questions, hidden) or a list of
    (questions, hidden) arrays per layer; target: (questions, k) or (questions,). `knockout`: a knocked-out
    run of the same questions, {"vision", "language", "target", optional "predicted", "p_correct", and
    "edges", "layers": the window (decoder layers, inclusive)}."""
    path = Path(path)
    kind = format or SUFFIXES.get(path.suffix.lower())
    if kind not in FORMATS:
        raise ValueError(f"cannot tell the format of {path.name}: use a .npz, .safetensors or .pt suffix or format=")
    arrays = {"vision": _as_array(vision), "language": _as_array(language), "target": _as_array(target)}
    if p_correct is not None:
        arrays["p_correct"] = np.asarray(p_correct, dtype=np.float32)
    if images is not None:
        arrays["images"] = np.asarray(images, dtype=np.uint8)
    texts = {name: [str(v) for v in value] for name, value in
             (("qids", qids), ("tasks", tasks), ("questions", questions), ("answers", answers),
              ("predicted", predicted), ("answer_set", answer_set)) if value is not None}
    meta = dict(meta or {})
    if knockout is not None:
        knockout = dict(knockout)
        meta["knockout"] = {"edges": list(knockout.pop("edges", [])), "layers": [int(x) for x in knockout.pop("layers", [])]}
        for name in ("vision", "language", "target"):
            arrays[KNOCKOUT + name] = _as_array(knockout.pop(name))
        if knockout.get("p_correct") is not None:
            arrays[KNOCKOUT + "p_correct"] = np.asarray(knockout.pop("p_correct"), dtype=np.float32)
        if knockout.get("predicted") is not None:
            texts[KNOCKOUT + "predicted"] = [str(v) for v in knockout.pop("predicted")]
        if any(value is not None for value in knockout.values()):
            raise ValueError(f"unknown knockout entries {sorted(knockout)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "npz":
        buffer = io.BytesIO()  # np.savez(path) would append .npz to any other name
        np.savez(buffer, **arrays, **{name: np.array(value, dtype=str) for name, value in texts.items()},
                 **({"meta": np.array(json.dumps(meta))} if meta else {}))
        path.write_bytes(buffer.getvalue())
    elif kind == "safetensors":
        from safetensors.numpy import save_file

        metadata = {name: json.dumps(value) for name, value in texts.items()}
        if meta:
            metadata["meta"] = json.dumps(meta)
        save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(path), metadata=metadata)
    else:
        import torch

        torch.save({**{name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()},
                    **texts, **({"meta": meta} if meta else {})}, path)
    return read_features(path).sha256


def _as_array(value) -> np.ndarray:
    if isinstance(value, list | tuple):
        return np.stack([_as_array(v) for v in value])
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 included)
        value = value.detach().float().cpu().numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" and array.dtype not in (np.float16, np.float32) \
        else array
