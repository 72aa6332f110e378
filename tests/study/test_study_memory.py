"""Bounded memory of a study part (issue 17.3): with a spill folder, extract_runs writes each run's pooled
states to files batch by batch and reads them back a layer at a time, so the host memory it holds does not
grow with the number of runs (measured with tracemalloc, which counts numpy's buffers); in memory, it grows
by one run's states per run. The spilled features are bit-equal to the in-memory ones, and a shard merge
reads one layer at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from pidcore.data import answer_set, load_questions
from pidcore.extract import Knockout
from pidcore.extract.multirun import extract_runs
from pidcore.pipeline.analysis import _adapter

N = 96


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    adapter = _adapter("demo")
    items = load_questions("easy-vqa", ["shape"], split="test", n=N, seed=3)
    yield adapter, items
    torch.set_num_threads(threads)


def _runs(count: int) -> dict:
    runs = {"baseline": None}
    for first in range(count - 1):
        runs[f"k{first}"] = Knockout(edges=("image->question",), layers=(first % 6, first % 6))
    return runs


def _peak(adapter, items, runs, spill_dir=None) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        features = extract_runs(adapter, items, answers=answer_set("easy-vqa"), runs=runs, batch_size=8,
                                spill_dir=spill_dir)
        return tracemalloc.get_traced_memory()[1], features
    finally:
        tracemalloc.stop()


def test_spilled_runs_hold_memory_independent_of_the_number_of_runs(setup, tmp_path):
    adapter, items = setup
    layers, hidden = adapter.num_layers + 1, adapter.model.config.text_config.hidden_size
    one_run = layers * N * hidden * 2 * 4  # float32 vision + language states of one run
    peaks = {}
    _peak(adapter, items[:16], _runs(2), tmp_path / "warm")  # one-time imports and caches out of the figures
    for count in (2, 6):
        peaks["memory", count], in_memory = _peak(adapter, items, _runs(count))
        peaks["spilled", count], spilled = _peak(adapter, items, _runs(count), tmp_path / f"spill{count}")
        for name, features in in_memory.items():
            for layer in range(layers):
                assert np.array_equal(spilled[name].vision[layer], features.vision[layer])
                assert np.array_equal(spilled[name].language[layer], features.language[layer])
            assert np.array_equal(spilled[name].target, features.target)
            assert list(spilled[name].qids) == list(features.qids)
    growth = {kind: peaks[kind, 6] - peaks[kind, 2] for kind in ("memory", "spilled")}
    print(f"one run's states {one_run / 2**20:.2f} MiB; traced peak 2 -> 6 runs: in memory "
          f"{peaks['memory', 2] / 2**20:.2f} -> {peaks['memory', 6] / 2**20:.2f} MiB, spilled "
          f"{peaks['spilled', 2] / 2**20:.2f} -> {peaks['spilled', 6] / 2**20:.2f} MiB")
    assert growth["memory"] > 3.5 * one_run  # four more runs kept (and copied at the end)
    # four more runs' per-question answers (question texts, ids, answer scores: ~50 KB each here, where a
    # run's states are only 0.66 MiB at hidden 128; at 4,096 wide they are ~1/1000 of them), no states
    assert growth["spilled"] < 0.4 * one_run
    assert peaks["spilled", 6] < 0.5 * peaks["memory", 6]


def test_a_merge_reads_one_layer_at_a_time(setup):
    from worker import shards

    adapter, items = setup
    whole = extract_runs(adapter, items[:32], answers=answer_set("easy-vqa"), runs={"baseline": None})["baseline"]
    halves = [extract_runs(adapter, chunk, answers=answer_set("easy-vqa"), runs={"baseline": None})["baseline"]
              for chunk in (items[:16], items[16:32])]
    merged = shards.merge(halves)
    assert merged.vision.shape == whole.vision.shape and merged.n == 32
    for layer in range(whole.num_layers):
        assert np.array_equal(merged.vision[layer], whole.vision[layer])
        assert np.array_equal(merged.language[layer], whole.language[layer])
    assert np.array_equal(np.asarray(merged.vision), whole.vision)
