"""benchmarks/gpu_check.sh, the prepared GPU check, in its CPU smoke mode (--tiny): it runs from source under
the given python, builds both LLaVA shapes with their processors' real token counts, searches the batch size,
measures prefix reuse and prints the study's projection counting all 34 runs per model and task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_plan_counted_is_the_studys_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from pidcore.study.run import StudyRequest, plan_runs

    runs = plan_runs(StudyRequest(), 32)  # the default study: baseline, seed cut, k=9 sweep
    firsts = sorted(run.knockout["layers"][0] for run in runs if run.knockout)
    assert len(runs) == 34 and sorted(gpu_bench.window_firsts(32, 9)) == firsts
    assert gpu_bench.layer_passes(32, 9) == (34 * 32, 710)  # 678 without the seed cut's 32


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--tiny"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "tiny: a smoke test, not a measurement" in out
    assert "LLaVA-1.5-7B-shaped: 598 tokens per question (576 image tokens)" in out
    assert "LLaVA-1.6-7B-shaped: 2362 tokens per question (2340 image tokens)" in out  # anyres, 640x480
    assert out.count("batch search (auto, no memory probe on this device): 2: ") == 2
    for model, family in (("LLaVA-1.5-7B", "llava"), ("LLaVA-1.6-7B", "next")):
        assert (f"{model} ({family} tokens): 34 runs, 1088 decoder-layer passes per question plain / 710 with "
                f"prefix reuse") in out
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert figures["tiny"] is True and set(figures["families"]) == {"llava", "next"}
    hours = figures["projection"]["total_hours"]
    assert hours["plain"] > 0 and hours["reuse"] > 0
    assert figures["families"]["next"]["image_tokens"] == 2340 and figures["families"]["llava"]["image_tokens"] == 576
