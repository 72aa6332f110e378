"""`pidflow analyze / serve / study` loading flags: --device, --dtype, --device-map, --quantization,
--batch-size set the PIDFLOW_* variables that pidcore.extract.loading reads where the model runs."""

from __future__ import annotations

import os

import pytest

from app import cli

NAMES = ("PIDFLOW_DEVICE", "PIDFLOW_DTYPE", "PIDFLOW_DEVICE_MAP", "PIDFLOW_QUANTIZATION", "PIDFLOW_BATCH_SIZE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in NAMES:  # set then deleted: monkeypatch restores each (unset) after the test, whatever the CLI set
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_serve_gives_the_loading_flags_to_its_workers(monkeypatch):
    seen = {}

    def fake_serve(**kwargs):
        seen.update({name: os.environ.get(name) for name in NAMES})
        return 0

    monkeypatch.setattr("app.embedded.serve", fake_serve)
    monkeypatch.setattr(cli, "_missing_server_modules", lambda: [])
    assert cli.main(["serve", "--device", "cuda:0", "--dtype", "bfloat16", "--batch-size", "auto",
                     "--device-map", "auto"]) == 0
    assert seen == {"PIDFLOW_DEVICE": "cuda:0", "PIDFLOW_DTYPE": "bfloat16", "PIDFLOW_DEVICE_MAP": "auto",
                    "PIDFLOW_QUANTIZATION": None, "PIDFLOW_BATCH_SIZE": "auto"}


def test_analyze_refuses_loading_flags_where_no_model_runs_here(capsys):
    assert cli.main(["analyze", "--server", "http://127.0.0.1:9", "--batch-size", "16"]) == 2
    assert "--batch-size: how a model is loaded applies where it runs" in capsys.readouterr().err
    assert cli.main(["analyze", "--features", "f.npz", "--device", "cpu"]) == 2
    assert "with --features no model runs" in capsys.readouterr().err
    assert cli.main(["analyze", "--batch-size", "0"]) == 2
    assert "must be >= 1 or auto" in capsys.readouterr().err


def test_study_sets_them_before_it_runs(monkeypatch):
    seen = {}

    def fake_study(args):
        seen.update({name: os.environ.get(name) for name in NAMES})
        return 0

    monkeypatch.setattr("app.study_cli.cmd_study", fake_study)
    assert cli.main(["study", "--dtype", "float16", "--quantization", "4bit"]) == 0
    assert seen["PIDFLOW_DTYPE"] == "float16" and seen["PIDFLOW_QUANTIZATION"] == "4bit"
    # a study takes a batch size too now (shards start at multiples of it; issue 17)
    assert cli.main(["study", "--batch-size", "4"]) == 0 and seen["PIDFLOW_BATCH_SIZE"] == "4"
