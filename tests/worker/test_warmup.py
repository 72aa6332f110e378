"""The worker's warm-up runs: each preloaded model is loaded into the adapter cache the extract task uses
and runs a real forward of two questions, without a traceback in the log."""

from __future__ import annotations

import logging

import numpy as np

import pidcore.extract
from pidcore.pipeline.analysis import _adapter
from worker import tasks
from worker.settings import WorkerSettings


def test_the_warm_up_runs_a_forward_of_the_demo_model(monkeypatch, caplog, one_thread):
    monkeypatch.setattr(tasks, "_context", lambda: (WorkerSettings(preload=("demo",)), None))
    real_extract, runs = pidcore.extract.extract, []

    def spy(adapter, items, **options):
        features = real_extract(adapter, items, **options)
        runs.append((adapter, len(items), features))
        return features

    monkeypatch.setattr(pidcore.extract, "extract", spy)
    with caplog.at_level(logging.INFO, logger=tasks.log.name):
        tasks._preload()
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert any("preloaded model 'demo' (a forward of 2 questions)" in record.getMessage() for record in caplog.records)
    (adapter, questions, features), = runs
    assert questions == 2 and features.n == 2
    assert features.vision.shape[0] == features.num_layers and np.isfinite(features.vision).all()
    assert adapter is _adapter("demo")  # the cached adapter the first job will use
