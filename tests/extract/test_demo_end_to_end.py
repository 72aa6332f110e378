"""`pidflow analyze --model demo` end to end (baseline and knockout); runs once the demo weights are committed."""

from __future__ import annotations

import json

import pytest

from app.cli import main


def _demo_present() -> bool:
    try:
        from pidcore.demo import demo_model_path

        demo_model_path()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _demo_present(), reason="demo model weights not committed yet")
def test_pidflow_analyze_demo_with_knockout(tmp_path, capsys):
    output = tmp_path / "result.json"
    code = main(["analyze", "--model", "demo", "--dataset", "easy-vqa", "--task", "color", "--n-questions", "120",
                 "--no-gaussianize", "--knockout", "image->question", "--knockout-layers", "1", "3",
                 "-o", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    layers = result["model"]["num_layers"] + 1
    assert result["n_questions"] == 120 and len(result["runs"]["baseline"]["layers"]) == layers
    assert result["runs"]["baseline"]["accuracy"] >= 0.8
    assert result["effects"]["answer_probability_change"] < 0, "cutting image->question costs answer probability"
    printed = capsys.readouterr().out
    assert "trapped_unique_vision" in printed and "dU_v" in printed
