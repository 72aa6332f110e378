"""The dashboard on the real stack: `pidflow serve` (private Redis, a Celery worker, uvicorn) and a
small demo analysis, in headless Chromium. Runs once worker/ and the demo model have landed."""

from __future__ import annotations

import os

import pytest

from app.served import served, stack_available
from tests.browser.stack import CHROMIUM, chromium
from tests.browser.test_dashboard import ARTIFACTS, open_tab, pick, plot_data, wait_for_traces

ANALYSIS_TIMEOUT_MS = 150_000


pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(not stack_available(), reason="worker/ and the demo model have not landed"),
]


@pytest.fixture(scope="module")
def served_url():
    with served() as url:
        yield url


def small_demo_form(page):
    page.locator("#n-questions").fill("100")  # dims 4 4 3 with the default 200 bootstrap rounds need 74
    for name, value in (("vision", "4"), ("language", "4"), ("target", "3")):
        page.locator(f"#dim-{name}").fill(value)
    page.locator("#gaussianize").click()
    page.get_by_text("copula (normal scores per coordinate)").click()


def test_demo_analysis_in_the_browser(served_url, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(served_url + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=20_000)
        small_demo_form(page)
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function(
            "document.querySelector('#stacked-baseline .js-plotly-plot')?.data?.some(t => t.meta === 'synergy')",
            timeout=ANALYSIS_TIMEOUT_MS)
        summary = page.locator("#result-summary").inner_text()
        num_layers = int(summary.split(" layers")[0].split("· ")[-1])
        traces = [t for t in plot_data(page, "stacked-baseline") if t["meta"] == "redundancy"]
        assert traces[0]["x"] == list(range(num_layers))  # one point per layer (0 = embeddings)
        page.screenshot(path=str(ARTIFACTS / "real-01-results.png"), full_page=True)

        open_tab(page, "New analysis")
        page.get_by_label("image->question").check()
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function(
            "document.querySelector('#difference .js-plotly-plot')?.data?.some(t => t.meta === 'total')",
            timeout=ANALYSIS_TIMEOUT_MS)
        assert len(next(t for t in plot_data(page, "difference") if t["meta"] == "total")["y"]) == num_layers
        page.screenshot(path=str(ARTIFACTS / "real-02-knockout.png"), full_page=True)

        open_tab(page, "Questions")
        pick(page, "question-pick", "easy-vqa")
        page.wait_for_function("() => { const img = document.querySelector('#question-image');"
                               " return img && img.complete && img.naturalWidth > 0; }", timeout=20_000)
        wait_for_traces(page, "question-figure", "baseline:synergy")
        page.screenshot(path=str(ARTIFACTS / "real-03-question.png"), full_page=True)

        # an own image and question placed among this analysis's questions (the worker kept its features)
        from pidcore.data import find_image

        page.locator("#own-image input[type=file]").set_input_files(str(find_image("easy-vqa.test.3")))
        page.locator("#own-text").fill("what color is the shape?")
        page.get_by_role("button", name="Ask the demo model").click()
        page.wait_for_function(
            "document.querySelector('#own-terms .js-plotly-plot')?.data?.some(t => t.meta === 'own:synergy')",
            timeout=ANALYSIS_TIMEOUT_MS)
        # the note is another output of the same callback: wait until the page shows it, not only the figure
        page.wait_for_function("(document.querySelector('#own-terms-note')?.innerText || '').length > 0",
                               timeout=30_000)
        note = page.locator("#own-terms-note").inner_text()
        assert "placed among the 100 questions" in note and "moved their terms by at most" in note
        assert len(plot_data(page, "own-terms")[-1]["y"]) == num_layers
        page.locator("#own-terms").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "real-04-own-terms.png"), full_page=False)

        open_tab(page, "Results")
        page.get_by_role("button", name="Create read-only link").click()
        page.wait_for_function("document.querySelector('#share-link').value.includes('?share=')", timeout=20_000)
        link = page.locator("#share-link").input_value()
        original = plot_data(page, "stacked-baseline")

    with chromium(tmp_path / "fresh") as fresh:
        page = fresh.pages[0] if fresh.pages else fresh.new_page()
        page.goto(link)
        wait_for_traces(page, "stacked-baseline", "synergy")
        assert plot_data(page, "stacked-baseline") == original
        assert page.locator("#read-only-banner").is_visible()
