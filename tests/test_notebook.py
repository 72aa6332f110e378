"""docs/notebook.ipynb runs offline on the demo model: its code cells run in order as one script in a fresh
Python (no Jupyter needed), each `fig.show()` captured as plotly JSON; the figures it shows hold the result's
numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"

# fig.show() in the script goes to a renderer that saves each figure as JSON (figure-0.json, figure-1.json ...)
PREAMBLE = '''
import os as _os
import plotly.io as _pio
from plotly.io.base_renderers import ExternalRenderer as _External

class _Capture(_External):
    count = 0

    def render(self, fig_dict):
        path = _os.path.join(_os.environ["NOTEBOOK_FIGURES"], f"figure-{_Capture.count}.json")
        _pio.write_json(fig_dict, path)
        _Capture.count += 1

_pio.renderers["capture"] = _Capture()
_pio.renderers.default = "capture"
'''


def notebook_script(path: Path = NOTEBOOK) -> str:
    """The notebook's code cells, in order, as one script."""
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(not cell.get("outputs") for cell in notebook["cells"] if cell["cell_type"] == "code"), \
        "commit the notebook without outputs"
    return "\n\n".join(cells) + "\n"


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """Run the notebook; the figures it showed, in order, as dicts."""
    folder = tmp_path_factory.mktemp("notebook")
    script = folder / "notebook.py"
    script.write_text(PREAMBLE + notebook_script())
    env = {**os.environ, "NOTEBOOK_FIGURES": str(folder), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    count = len(list(folder.glob("figure-*.json")))
    return [json.loads((folder / f"figure-{i}.json").read_text()) for i in range(count)], done.stdout


def _trace(figure: dict, meta: str) -> dict:
    (trace,) = [t for t in figure["data"] if t.get("meta") == meta]
    return trace


def test_notebook_runs_offline_and_shows_every_figure(shown):
    figures, stdout = shown
    assert "80 questions; 7 layers (0 = embeddings)" in stdout
    titles = [((f["layout"].get("title") or {}).get("text") or "") for f in figures]
    assert titles == ["Baseline: decomposition per layer", "Knockout: decomposition per layer",
                      "Knockout - baseline per layer", "Tasks compared: Vision only (unique vision) per layer (baseline)",
                      "Baseline: decomposition per layer", "Knockout - baseline per layer",
                      "PID per layer, baseline (pidflow recipe), bits",
                      "knockout sweep demo · color (pidflow): ΔU_vision (bits)"]


def test_notebook_figures_carry_the_results_numbers(shown):
    figures, _ = shown
    baseline, knockout, difference, tasks, objects, object_difference, multiples, sweep = figures
    # stacked parts: one point per layer 0..6, the four parts with interval bands, a shared y range
    total = _trace(baseline, "total")
    assert total["x"] == list(range(7)) and all(float(v) > 0 for v in total["y"])
    assert {t["meta"] for t in baseline["data"]} >= {"redundancy", "ci:redundancy", "synergy", "ci:synergy"}
    assert baseline["layout"]["yaxis"]["range"] == knockout["layout"]["yaxis"]["range"]
    (window,) = [s for s in knockout["layout"]["shapes"] if s["type"] == "rect"]
    assert (window["x0"], window["x1"]) == (1.5, 4.5)  # decoder layers 1-3 are plot layers 2-4
    # knockout difference: exactly 0 before the window, paired bands on every term
    for figure in (difference, object_difference):
        for term in ("redundancy", "unique_vision", "unique_language", "synergy", "total"):
            values = _trace(figure, term)["y"]
            assert values[0] == 0.0 and values[1] == 0.0, (term, values)
            band = _trace(figure, f"ci:{term}")["y"]
            assert len(band) == 14 and band[0] == 0.0 and band[-1] == 0.0  # upper at layer 0 ... lower at layer 0
        assert any(abs(v) > 1e-6 for v in _trace(figure, "total")["y"][2:])
    assert {t["meta"] for t in tasks["data"]} == {"color", "shape"}
    assert _trace(objects, "total")["x"] == list(range(7))
    # the study figures: 4 parts stacked over 7 layers; the sweep: one row per window centre (6 decoder layers)
    assert len(multiples["data"]) == 4 and all(len(t["x"]) == 7 for t in multiples["data"])
    heat = sweep["data"][0]
    assert heat["type"] == "heatmap" and heat["y"] == list(range(6)) and heat["x"] == list(range(7))


def test_notebook_in_a_jupyter_kernel(tmp_path):
    """Where Jupyter's nbclient and ipykernel are installed (not pidflow dependencies: skipped otherwise), the
    notebook runs in a real kernel and each fig.show() gives a plotly output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
             if "application/vnd.plotly.v1+json" in output.get("data", {})]
    assert len(shown) == 8
