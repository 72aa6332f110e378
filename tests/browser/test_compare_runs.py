"""The Compare tab in a real headless Chromium (open mode, a stand-in job layer, documents with known values):
each trace draws the run picked for it and the legend names that run (issue 18.5); equal depths on the layer
index. Screenshot tests/artifacts/compare-runs-1366.png."""

from __future__ import annotations

import os

import pytest

from app.service import DEFAULT_REQUEST
from tests.browser.stack import CHROMIUM, NUM_LAYERS, chromium, running_server
from tests.browser.test_dashboard import ARTIFACTS, open_tab, plot_data, wait_for_traces
from tests.ui.demo_result import layer_terms

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]

TIMEOUT_MS = 45_000  # the machine is shared: generous
KNOCKOUT = {"edges": ["image->question"], "layers": [1, 3]}


def _trace(page, meta):
    return next(t for t in plot_data(page, "comparison") if t["meta"] == meta)


def test_the_legend_names_the_run_each_trace_draws(tmp_path):
    with running_server(run_s=0.0) as (url, service):
        cut = service.submit({**DEFAULT_REQUEST, "knockout": KNOCKOUT})["id"]
        plain = service.submit({**DEFAULT_REQUEST, "tasks": ["shape"]})["id"]
        ARTIFACTS.mkdir(exist_ok=True)
        with chromium(tmp_path / "profile") as context:
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/?analysis={cut}")
            wait_for_traces(page, "stacked-baseline", "synergy")
            open_tab(page, "Compare")
            page.locator("#compare-id").fill(plain)
            page.locator("#compare-id").press("Enter")
            wait_for_traces(page, "comparison", "other:synergy")
            this = _trace(page, "this:unique_vision")
            assert this["name"] == "this: demo · color · baseline"  # a baseline, named so (not "knockout")
            assert this["x"] == list(range(NUM_LAYERS + 1))  # equal depths: the layer index
            assert this["y"] == pytest.approx([layer_terms(i)[1] for i in range(NUM_LAYERS + 1)])
            assert page.locator("#compare-run-other input[value=knockout]").is_disabled()
            page.locator("#compare-run-this").get_by_text("knockout").click()
            page.wait_for_function("""() => { const el = document.querySelector('#comparison .js-plotly-plot');
                return el && el.data && el.data.some(t => t.meta === 'this:unique_vision'
                                                         && t.name.includes('knockout')); }""", timeout=TIMEOUT_MS)
            this = _trace(page, "this:unique_vision")
            assert this["name"] == "this: demo · color · knockout image->question, decoder layers 1-3"
            assert this["y"] == pytest.approx([layer_terms(i, True)[1] for i in range(NUM_LAYERS + 1)])
            assert _trace(page, "other:unique_vision")["name"] == "other: demo · shape · baseline"
            assert "this analysis's knockout against the other's baseline" in page.locator("#correlations").inner_text()
            page.screenshot(path=str(ARTIFACTS / "compare-runs-1366.png"), full_page=True)
            assert not errors
