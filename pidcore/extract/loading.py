"""How a model is loaded and batched: device, dtype, device_map, 8/4-bit quantization, batch size.

Every option is an argument of `load_adapter` / `extract` / `extract_runs`; one left out comes from the
environment (so workers, `pidflow serve` and the CLI set them without touching the request):

| variable | values | default |
|---|---|---|
| PIDFLOW_DEVICE | cuda, cuda:1, cpu, mps | cuda when available, else cpu |
| PIDFLOW_DTYPE | bfloat16, float16, float32 | bfloat16 on GPU, float32 on CPU |
| PIDFLOW_DEVICE_MAP | auto, balanced, sequential (accelerate: layers over several GPUs / CPU) | unset: one device |
| PIDFLOW_QUANTIZATION | 8bit, 4bit (bitsandbytes) | unset |
| PIDFLOW_BATCH_SIZE | a number, or auto | 8 |

`auto` batch size: the largest batch that fits, found by a short search on the run's own first batches
(on a GPU: start from the size remembered for this model and device, else 8; after each batch grow towards
what the measured peak memory says fits in 90% of the device, at most doubling; on out-of-memory halve the
batch and run it again, never failing for memory while one question fits) and remembered per model,
revision, device, dtype and quantization in PIDFLOW_BATCH_CACHE (default ~/.cache/pidflow/batch_sizes.json).
On a CPU it stays at 8 unless out-of-memory says otherwise (the CPU has no memory probe).
A fixed batch size also backs off on out-of-memory (halving) rather than failing. Numbers do not depend on
the batch size beyond float rounding (padding differs).

Nothing here imports torch at module level: the worker's settings read it without loading torch.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
QUANTIZATIONS = ("8bit", "4bit")
DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_BATCH = 8
MAX_AUTO_BATCH = 512
MEMORY_FRACTION = 0.9  # auto batch: grow while the predicted peak stays under this share of the device


@dataclass(frozen=True)
class LoadOptions:
    """device, dtype, device_map, quantization (None: the defaults above) and batch_size (int or "auto")."""

    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    quantization: str | None = None
    batch_size: int | str = DEFAULT_BATCH

    @classmethod
    def from_env(cls, env: dict | None = None) -> LoadOptions:
        env = dict(os.environ if env is None else env)
        return cls(device=env.get("PIDFLOW_DEVICE") or None, dtype=env.get("PIDFLOW_DTYPE") or None,
                   device_map=env.get("PIDFLOW_DEVICE_MAP") or None,
                   quantization=env.get("PIDFLOW_QUANTIZATION") or None,
                   batch_size=env.get("PIDFLOW_BATCH_SIZE") or DEFAULT_BATCH).checked()

    def checked(self) -> LoadOptions:
        """ValueError naming the variable for a value that cannot work."""
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype (PIDFLOW_DTYPE) must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise ValueError(f"device_map (PIDFLOW_DEVICE_MAP) must be one of {', '.join(DEVICE_MAPS)}, got "
                             f"{self.device_map!r}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization (PIDFLOW_QUANTIZATION) must be one of {', '.join(QUANTIZATIONS)}, got "
                             f"{self.quantization!r}")
        if self.device is not None and self.device.split(":")[0] not in ("cuda", "cpu", "mps", "xpu"):
            raise ValueError(f"device (PIDFLOW_DEVICE) must be cuda, cuda:<i>, cpu, mps or xpu, got {self.device!r}")
        return LoadOptions(self.device, self.dtype, self.device_map, self.quantization,
                           parse_batch_size(self.batch_size))

    def as_env(self) -> dict[str, str]:
        """The PIDFLOW_* variables that give these options to another process (a worker)."""
        values = {"PIDFLOW_DEVICE": self.device, "PIDFLOW_DTYPE": self.dtype, "PIDFLOW_DEVICE_MAP": self.device_map,
                  "PIDFLOW_QUANTIZATION": self.quantization, "PIDFLOW_BATCH_SIZE": str(self.batch_size)}
        return {key: value for key, value in values.items() if value is not None}


def parse_batch_size(value) -> int | str:
    """An int >= 1 or "auto"; ValueError otherwise."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"batch size (PIDFLOW_BATCH_SIZE) must be a number or auto, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"batch size (PIDFLOW_BATCH_SIZE) must be >= 1 or auto, got {value!r}")
    return value


def resolve_batch_size(batch_size) -> int | str:
    """`batch_size` as given, or PIDFLOW_BATCH_SIZE (default 8) when None."""
    return LoadOptions.from_env().batch_size if batch_size is None else parse_batch_size(batch_size)


# -- out of memory ---------------------------------------------------------------------------------------

def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _free_cached_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the batch size search -------------------------------------------------------------------------------

_REMEMBERED: dict[str, int] = {}
_LOCK = threading.Lock()


def cache_path() -> Path:
    return Path(os.environ.get("PIDFLOW_BATCH_CACHE") or Path.home() / ".cache" / "pidflow" / "batch_sizes.json")


def adapter_key(adapter) -> str:
    """model name @ revision | device name | dtype | quantization: what a remembered batch size is for."""
    import torch

    device = adapter.device
    name = str(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name} {props.total_memory // 2**30} GiB"
    config = getattr(getattr(adapter, "model", None), "config", None)
    quantization = getattr(config, "quantization_config", None)
    quantized = "none" if quantization is None else ("8bit" if getattr(quantization, "load_in_8bit", False) else "4bit")
    devices = getattr(getattr(adapter, "model", None), "hf_device_map", None)
    spread = f"|map{len(set(map(str, devices.values())))}" if devices else ""
    return (f"{getattr(adapter, 'name', '?')}@{getattr(adapter, 'revision', '?')}|{name}{spread}|"
            f"{str(adapter.dtype).removeprefix('torch.')}|{quantized}")


def remembered(key: str) -> int | None:
    with _LOCK:
        if key in _REMEMBERED:
            return _REMEMBERED[key]
        try:
            value = json.loads(cache_path().read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, int) and value >= 1:
            _REMEMBERED[key] = value
            return value
        return None


def remember(key: str, size: int) -> None:
    with _LOCK:
        _REMEMBERED[key] = size
        path = cache_path()
        try:
            known = json.loads(path.read_text()) if path.is_file() else {}
            if not isinstance(known, dict):
                known = {}
            known[key] = size
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(known, indent=1, sort_keys=True))
            os.replace(temporary, path)
        except (OSError, ValueError):  # a read-only home: remembered in this process only
            pass


class BatchSizer:
    """The batch size of one extraction: fixed (backing off on out-of-memory) or "auto" (the search above).

    `probe`: an object with `start()` (before a batch) and `measure()` -> (bytes in use before the batch,
    peak bytes during it, device bytes), None where there is no probe (CPU); tests give their own."""

    def __init__(self, batch_size, key: str | None = None, probe=None, maximum: int = MAX_AUTO_BATCH):
        batch_size = parse_batch_size(batch_size)
        self.auto, self.key, self.maximum, self.probe = batch_size == "auto", key, maximum, probe
        known = remembered(key) if self.auto and key else None
        self.searching = self.auto and known is None
        self.size = known or (min(DEFAULT_BATCH, maximum) if self.auto else batch_size)
        self.ceiling: int | None = None  # the smallest size that ran out of memory
        self.largest_ok = 0
        self.backoffs = 0
        self.sizes: list[int] = []  # every batch that ran, in order

    @classmethod
    def for_adapter(cls, adapter, batch_size) -> BatchSizer:
        batch_size = resolve_batch_size(batch_size)
        if batch_size != "auto":
            return cls(batch_size)
        return cls(batch_size, key=adapter_key(adapter), probe=CudaProbe.for_adapter(adapter))

    def take(self, remaining: int) -> int:
        """The size of the next batch (at most `remaining`)."""
        return max(1, min(self.size, remaining))

    def before_batch(self) -> None:
        if self.searching and self.probe is not None:
            self.probe.start()

    def succeeded(self, used: int) -> None:
        """A batch of `used` questions ran: while searching, grow towards what the measured memory says fits
        (at most doubling), or settle."""
        self.sizes.append(used)
        self.largest_ok = max(self.largest_ok, used)
        if not self.searching or used < self.size:
            return
        measured = self.probe.measure() if self.probe is not None else None
        if measured is None:  # nothing to measure with (CPU): keep the size
            self._settle()
            return
        before, peak, total = measured
        grown = min(2 * self.size, self.maximum, (self.ceiling - 1) if self.ceiling else self.maximum)
        per_question = max(peak - before, 1) / used
        grown = min(grown, int((MEMORY_FRACTION * total - before) / per_question))
        if grown <= self.size:
            self._settle()
        else:
            self.size = grown

    def out_of_memory(self, used: int, error: BaseException) -> None:
        """A batch of `used` questions ran out of memory: halve it (never below what is known to fit) and let
        the caller run it again; re-raise when a single question does not fit."""
        _free_cached_memory()
        if used <= 1:
            raise error
        self.backoffs += 1
        self.ceiling = used if self.ceiling is None else min(self.ceiling, used)
        self.size = max(1, used // 2, min(self.largest_ok, self.ceiling - 1))
        if self.auto:
            self._settle()

    def _settle(self) -> None:
        self.searching = False
        if self.auto and self.key:
            remember(self.key, self.size)

    def finish(self) -> None:
        if self.searching:  # the questions ran out while growing: what ran fits
            self.size = max(self.largest_ok, 1)
            self._settle()


class CudaProbe:
    """Memory in use before a batch, its peak, and the device's size, on the fullest of the model's GPUs."""

    def __init__(self, indices: list[int]):
        self.indices, self.before = indices, {}

    @classmethod
    def for_adapter(cls, adapter) -> CudaProbe | None:
        import torch

        if adapter.device.type != "cuda" or not torch.cuda.is_available():
            return None
        devices = getattr(adapter.model, "hf_device_map", None)
        indices = sorted({torch.device(d).index or 0 for d in devices.values()
                          if isinstance(d, int) or str(d).startswith("cuda")}) if devices else [adapter.device.index or 0]
        return cls(indices or [0])

    def start(self) -> None:
        import torch

        for index in self.indices:
            torch.cuda.reset_peak_memory_stats(index)
            self.before[index] = torch.cuda.memory_allocated(index)

    def measure(self) -> tuple[int, int, int]:
        import torch

        readings = [(self.before.get(i, 0), torch.cuda.max_memory_allocated(i),
                     torch.cuda.get_device_properties(i).total_memory) for i in self.indices]
        return max(readings, key=lambda r: (r[1] - r[0]) / max(r[2] - r[0], 1))


def run_batches(items: list, sizer: BatchSizer, run_batch, on_done=None) -> None:
    """Run `run_batch(chunk)` over `items` in batches from `sizer`; a batch that runs out of memory is run
    again smaller (run_batch must keep nothing of a batch that failed). `on_done(done)` after each batch."""
    start = 0
    while start < len(items):
        size = sizer.take(len(items) - start)
        sizer.before_batch()
        try:
            run_batch(items[start:start + size], start)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled; the rest re-raised
            if not is_out_of_memory(error):
                raise
            sizer.out_of_memory(size, error)
            continue
        start += size
        sizer.succeeded(size)
        if on_done is not None:
            on_done(start)
    sizer.finish()
