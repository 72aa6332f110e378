"""`pidflow analyze --features FILE` runs a features file locally: the library's numbers, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pidcore.features.files import write_features
from pidcore.features.uploaded import analyze_features
from tests.pidcore.test_featurefile import LAYERS, known_system

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "app.cli", "analyze", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)


def test_local_features_analysis(tmp_path):
    vision, language, y = known_system(seed=4)
    path = tmp_path / "toy.safetensors"
    sha = write_features(path, vision=vision, language=language, target=y, tasks=["a"] * 100 + ["b"] * 200)
    out = tmp_path / "result.json"
    proc = run_cli("--features", str(path), "--dims", "2", "2", "2", "--no-gaussianize", "--task", "b",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"model features:{sha}" in proc.stdout and "200 questions" in proc.stdout
    result = json.loads(out.read_text())
    assert result["request"]["tasks"] == ["b"] and result["n_questions"] == 200
    expected = analyze_features(path, dims=[2, 2, 2], gaussianize=False, tasks=["b"])
    assert result["runs"] == expected["runs"] and result["pointwise"] == expected["pointwise"]
    assert len(result["runs"]["baseline"]["layers"]) == LAYERS


def test_bad_files_and_conflicting_options_exit_2(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, vision=np.zeros((2, 5, 3)), language=np.zeros((2, 5, 3)))
    proc = run_cli("--features", str(bad))
    assert proc.returncode == 2 and "missing 'target'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("--features", str(tmp_path / "none.npz"))
    assert proc.returncode == 2 and "no features file" in proc.stderr
    proc = run_cli("--features", str(bad), "--model", "llava-hf/llava-1.5-7b-hf")
    assert proc.returncode == 2 and "--features replaces --model" in proc.stderr
