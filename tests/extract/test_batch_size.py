"""Loading options and batch sizes (pidcore.extract.loading): the environment's defaults, the "auto" search
(grow to what the measured memory says fits, remember it per model and device), and the back-off on
out-of-memory, simulated on CPU by a forward that raises torch.cuda.OutOfMemoryError above a batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pidcore.extract import Knockout, extract, load_adapter
from pidcore.extract.loading import BatchSizer, LoadOptions, remembered, run_batches
from pidcore.extract.multirun import extract_runs

from .conftest import ANSWERS, make_items

GIB = 1 << 30


@pytest.fixture(autouse=True)
def _batch_cache(tmp_path, monkeypatch):
    from pidcore.extract import loading

    monkeypatch.setenv("PIDFLOW_BATCH_CACHE", str(tmp_path / "batch_sizes.json"))
    monkeypatch.setattr(loading, "_REMEMBERED", {})
    for name in ("PIDFLOW_DEVICE", "PIDFLOW_DTYPE", "PIDFLOW_DEVICE_MAP", "PIDFLOW_QUANTIZATION", "PIDFLOW_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def eight_items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("images8"), n=8)


def _out_of_memory_above(model, limit: int, every: int = 1):
    """Make `model`'s forward raise torch.cuda.OutOfMemoryError for batches over `limit` (on every `every`-th
    call only, counting from 1); returns the batch sizes of the forwards that ran."""
    original, ran, calls = model.forward, [], [0]

    def forward(*args, **kwargs):
        size = kwargs["input_ids"].shape[0]
        calls[0] += 1
        if size > limit and calls[0] % every == 0:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated: batch {size} > {limit})")
        ran.append(size)
        return original(*args, **kwargs)

    model.forward = forward
    return ran


def test_options_come_from_the_environment_and_are_checked():
    options = LoadOptions.from_env({"PIDFLOW_DEVICE": "cuda:1", "PIDFLOW_DTYPE": "float16", "PIDFLOW_DEVICE_MAP": "auto",
                                    "PIDFLOW_QUANTIZATION": "4bit", "PIDFLOW_BATCH_SIZE": "auto"})
    assert options == LoadOptions("cuda:1", "float16", "auto", "4bit", "auto")
    assert options.as_env() == {"PIDFLOW_DEVICE": "cuda:1", "PIDFLOW_DTYPE": "float16", "PIDFLOW_DEVICE_MAP": "auto",
                                "PIDFLOW_QUANTIZATION": "4bit", "PIDFLOW_BATCH_SIZE": "auto"}
    assert LoadOptions.from_env({}) == LoadOptions(batch_size=8)
    assert LoadOptions.from_env({"PIDFLOW_BATCH_SIZE": "32"}).batch_size == 32
    for env, message in (({"PIDFLOW_BATCH_SIZE": "0"}, "must be >= 1 or auto"),
                         ({"PIDFLOW_BATCH_SIZE": "many"}, "must be a number or auto"),
                         ({"PIDFLOW_DTYPE": "fp8"}, "PIDFLOW_DTYPE"), ({"PIDFLOW_QUANTIZATION": "3bit"}, "PIDFLOW_QUANTIZATION"),
                         ({"PIDFLOW_DEVICE_MAP": "everywhere"}, "PIDFLOW_DEVICE_MAP"), ({"PIDFLOW_DEVICE": "tpu"}, "PIDFLOW_DEVICE")):
        with pytest.raises(ValueError, match=message):
            LoadOptions.from_env(env)


def test_load_adapter_takes_dtype_from_the_environment(llava_folder, monkeypatch):
    monkeypatch.setenv("PIDFLOW_DTYPE", "bfloat16")
    assert load_adapter(str(llava_folder)).dtype == torch.bfloat16
    monkeypatch.setenv("PIDFLOW_DTYPE", "float32")
    assert load_adapter(str(llava_folder), dtype="float64").dtype == torch.float64  # an argument wins
    monkeypatch.setenv("PIDFLOW_QUANTIZATION", "8bit")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ValueError, match="8bit quantization needs the bitsandbytes package"):
            load_adapter(str(llava_folder))


def test_a_fixed_batch_backs_off_on_out_of_memory_with_the_same_features(llava_folder, eight_items):
    reference = extract(load_adapter(str(llava_folder)), eight_items, answers=ANSWERS, batch_size=1)
    adapter = load_adapter(str(llava_folder))
    ran = _out_of_memory_above(adapter.model, 3)
    features = extract(adapter, eight_items, answers=ANSWERS, batch_size=8)
    assert ran == [2, 2, 2, 2]  # 8 and 4 ran out of memory; halved to 2, which fits
    np.testing.assert_allclose(features.vision, reference.vision, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.target, reference.target, rtol=1e-4, atol=1e-5)
    assert list(features.qids) == list(reference.qids)


def test_one_question_out_of_memory_still_fails(llava_folder, eight_items):
    adapter = load_adapter(str(llava_folder))
    _out_of_memory_above(adapter.model, 0)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="simulated: batch 1 > 0"):
        extract(adapter, eight_items[:2], answers=ANSWERS, batch_size=4)


def test_all_runs_of_a_batch_run_again_when_one_runs_out_of_memory(llava_folder, eight_items):
    runs = {"baseline": None, "cut": Knockout(edges=["image->question"], layers=[1, 1])}
    reference = extract_runs(load_adapter(str(llava_folder)), eight_items, answers=ANSWERS, runs=runs, batch_size=1)
    adapter = load_adapter(str(llava_folder))
    ran = _out_of_memory_above(adapter.model, 3, every=2)  # the knocked-out forward (2nd of each batch) fails
    result = extract_runs(adapter, eight_items, answers=ANSWERS, runs=runs, batch_size=8)
    assert ran == [8, 4, 2, 2, 2, 2, 2, 2, 2, 2]  # baselines of 8 and 4 ran, their knockouts did not: redone
    for name in runs:
        assert result[name].n == 8
        np.testing.assert_allclose(result[name].vision, reference[name].vision, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result[name].target, reference[name].target, rtol=1e-4, atol=1e-5)


class _FakeMemory:
    """A device of 40 GiB holding 10 GiB of weights; each question takes 0.5 GiB: 52 fit in 90%."""

    def __init__(self):
        self.size = 0

    def start(self):
        pass

    def measure(self):
        return 10 * GIB, 10 * GIB + self.size * GIB // 2, 40 * GIB


def test_auto_grows_to_what_fits_and_remembers_it(tmp_path):
    memory = _FakeMemory()
    sizer = BatchSizer("auto", key="tiny@r1|NVIDIA H100 80 GiB|bfloat16|none", probe=memory)
    sizes = []

    def run_batch(chunk, start):
        memory.size = len(chunk)
        sizes.append(len(chunk))

    run_batches(list(range(400)), sizer, run_batch)
    assert sizes[:5] == [8, 16, 32, 52, 52] and sum(sizes) == 400  # 64 would need 42 GiB > 36
    assert remembered("tiny@r1|NVIDIA H100 80 GiB|bfloat16|none") == 52
    assert json.loads((tmp_path / "batch_sizes.json").read_text()) == {"tiny@r1|NVIDIA H100 80 GiB|bfloat16|none": 52}
    again = BatchSizer("auto", key="tiny@r1|NVIDIA H100 80 GiB|bfloat16|none", probe=memory)
    assert again.size == 52 and not again.searching  # no second search for this model and device


def test_auto_backs_off_on_out_of_memory_and_remembers_what_ran():
    sizer = BatchSizer("auto", key="m@r|dev|bfloat16|none", probe=_FakeMemory())
    sizes = []

    def run_batch(chunk, start):
        if len(chunk) > 20:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(len(chunk))

    run_batches(list(range(100)), sizer, run_batch)
    assert sizes == [8, 16, 16, 16, 16, 16, 12] and sizer.backoffs == 1  # 32 failed: back to 16, known to fit
    assert remembered("m@r|dev|bfloat16|none") == 16


def test_auto_on_cpu_keeps_eight(llava_folder, eight_items):
    adapter = load_adapter(str(llava_folder))
    sizer = BatchSizer.for_adapter(adapter, "auto")
    assert sizer.probe is None and sizer.size == 8 and sizer.key.endswith("|cpu|float32|none")
    features = extract(adapter, eight_items[:5], answers=ANSWERS, batch_size="auto")
    assert features.n == 5


def test_a_worker_refuses_a_bad_loading_variable_at_start():
    from worker.settings import WorkerSettings

    assert WorkerSettings.from_env({"PIDFLOW_BATCH_SIZE": "auto", "PIDFLOW_DTYPE": "bfloat16"}).loading == \
        LoadOptions(dtype="bfloat16", batch_size="auto")
    with pytest.raises(ValueError, match=r"batch size \(PIDFLOW_BATCH_SIZE\) must be >= 1 or auto, got 0"):
        WorkerSettings.from_env({"PIDFLOW_BATCH_SIZE": "0"})
