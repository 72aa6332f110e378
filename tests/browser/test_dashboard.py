"""The dashboard in a real headless Chromium against a live server (uvicorn, API, real AnalysisService on
a private Redis, a stand-in job layer): submit, progress, stacked plot, knockout difference, question
explorer, share link opened read-only in a fresh browser. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.stack import CHROMIUM, NUM_LAYERS, chromium, running_server
from tests.ui.demo_result import layer_terms

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def server():
    with running_server(run_s=1.5) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def plot_data(page, graph_id: str) -> list[dict]:
    """The traces plotly drew in graph `graph_id` (name, meta, x, y)."""
    return page.evaluate(
        """id => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                   return el && el.data ? el.data.map(t => ({name: t.name, meta: t.meta, x: t.x, y: t.y})) : []; }""",
        graph_id)


def wait_for_traces(page, graph_id: str, meta: str):
    page.wait_for_function(
        """([id, meta]) => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                             return el && el.data && el.data.some(t => t.meta === meta); }""",
        arg=[graph_id, meta], timeout=TIMEOUT_MS)


def open_tab(page, label: str):
    """Click a tab and make sure it stays open: a late callback (a submit's URL update) may switch tabs."""
    selected = f"document.querySelector('.tab--selected')?.innerText.trim() === {label!r}"
    for _ in range(5):
        page.locator(".tab", has_text=label).first.click()
        page.wait_for_timeout(300)
        if page.evaluate(selected):
            page.wait_for_timeout(700)
            if page.evaluate(selected):
                return
    raise AssertionError(f"the {label} tab would not stay open")


def pick(page, dropdown_id: str, text: str):
    page.locator(f"#{dropdown_id}").click()
    page.get_by_role("option").filter(has_text=text).first.click()


def test_submit_knockout_question_and_share(server, artifacts, tmp_path):
    url, _ = server
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelectorAll('#ko-layers .rc-slider-handle, #ko-layers [role=slider]')"
                               ".length >= 2", timeout=TIMEOUT_MS)
        page.screenshot(path=str(artifacts / "ui-01-form.png"), full_page=True)

        # submit the demo analysis: progress is shown while it runs, then the stacked plot
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_selector("progress:not([hidden])", timeout=TIMEOUT_MS)
        status = page.locator("#submit-status").inner_text()
        assert "waiting for a worker" in status or "estimating the decomposition" in status
        wait_for_traces(page, "stacked-baseline", "redundancy")
        traces = [t for t in plot_data(page, "stacked-baseline") if t["meta"] == "unique_vision"]
        assert traces[0]["x"] == list(range(NUM_LAYERS + 1))  # one point per layer
        assert traces[0]["y"] == pytest.approx([layer_terms(i)[1] for i in range(NUM_LAYERS + 1)])
        page.screenshot(path=str(artifacts / "ui-02-results.png"), full_page=True)

        # fraction of total: the four areas stack to 1 at every layer
        page.locator("#mode").get_by_text("fraction of total").click()
        page.wait_for_function("document.querySelector('#stacked-baseline .js-plotly-plot').data"
                               ".find(t => t.meta === 'unique_vision').y[0] > 0.7", timeout=TIMEOUT_MS)
        stacked = [t["y"] for t in plot_data(page, "stacked-baseline") if t["meta"] in
                   ("redundancy", "unique_vision", "unique_language", "synergy")]
        assert [sum(column) for column in zip(*stacked, strict=True)] == pytest.approx([1.0] * (NUM_LAYERS + 1))
        page.locator("#mode").get_by_text("bits").click()

        # the same request again is cached and shown at once
        open_tab(page, "New analysis")
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function("document.querySelector('#submit-status')?.innerText.includes('Cached')",
                               timeout=TIMEOUT_MS)

        # toggle a knockout: the difference plot shows knockout - baseline per layer
        open_tab(page, "New analysis")
        page.get_by_label("image->question").check()
        page.get_by_role("button", name="Run analysis").click()
        wait_for_traces(page, "difference", "unique_vision")
        difference = {t["meta"]: t for t in plot_data(page, "difference")}
        assert difference["unique_vision"]["y"] == pytest.approx([0.1] * (NUM_LAYERS + 1))
        assert difference["redundancy"]["y"] == pytest.approx([0.0] * (NUM_LAYERS + 1))
        assert "total information lost" in page.locator("#effects").inner_text()
        wait_for_traces(page, "stacked-knockout", "synergy")
        for graph_id in ("stacked-baseline", "stacked-knockout", "difference"):  # drawn at full size
            assert page.locator(f"#{graph_id} .main-svg").first.bounding_box()["height"] >= 350
        page.screenshot(path=str(artifacts / "ui-03-knockout.png"), full_page=True)

        # question explorer: incorrect ones only, pick one, see its image and per-layer decomposition
        open_tab(page, "Questions")
        page.locator("#question-correct").get_by_text("incorrect").click()
        page.wait_for_function("document.querySelector('#question-count')?.innerText.startsWith('6 of 12')",
                               timeout=TIMEOUT_MS)
        pick(page, "question-pick", "image 3?")
        page.wait_for_function("() => { const img = document.querySelector('#question-image');"
                               " return img && img.complete && img.naturalWidth === 64; }", timeout=TIMEOUT_MS)
        wait_for_traces(page, "question-figure", "knockout:synergy")
        card = page.locator(".question-card").inner_text()
        assert "image 3?" in card and "Gold answer: yellow" in card and "incorrect" in card
        assert len(plot_data(page, "question-figure")) == 8
        page.screenshot(path=str(artifacts / "ui-04-question.png"), full_page=True)

        # share: a read-only link
        open_tab(page, "Results")
        page.get_by_role("button", name="Create read-only link").click()
        page.wait_for_function("document.querySelector('#share-link').value.includes('?share=')",
                               timeout=TIMEOUT_MS)
        link = page.locator("#share-link").input_value()
        original = plot_data(page, "difference")
        assert not errors, errors

    with chromium(tmp_path / "fresh-profile", width=2560, height=1440) as fresh:
        page = fresh.pages[0] if fresh.pages else fresh.new_page()
        page.goto(link)
        wait_for_traces(page, "difference", "unique_vision")
        assert plot_data(page, "difference") == original
        assert page.locator("#read-only-banner").is_visible()
        assert page.locator(".tab", has_text="New analysis").count() == 0 or \
            not page.locator(".tab", has_text="New analysis").first.is_visible()
        assert not page.get_by_role("button", name="Create read-only link").is_visible()
        page.screenshot(path=str(artifacts / "ui-05-shared-2560.png"), full_page=True)


def test_errors_are_said_plainly(server, tmp_path):
    url, _ = server
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url + "/?analysis=nope")
        page.wait_for_function("document.querySelector('#submit-status')?.innerText.includes('Cannot open')",
                               timeout=TIMEOUT_MS)
        assert "unknown analysis" in page.locator("#submit-status").inner_text()
        page.goto(url + "/?share=not-a-token")
        page.wait_for_function("document.querySelector('#submit-status, #result-message') !== null", timeout=TIMEOUT_MS)
        page.wait_for_selector("text=This share link does not work", timeout=TIMEOUT_MS, state="attached")
        page.goto(url + "/")
        page.locator("#n-questions").fill("0")
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_selector("text=Cannot start the analysis", timeout=TIMEOUT_MS)
        assert "positive whole number" in page.locator("#submit-status").inner_text()


def first_view_plotly(url: str, service, profile) -> tuple[list[str], str]:
    """Open the default analysis in a fresh browser profile until the stacked plot is drawn: the plotly
    scripts the page fetched and window.Plotly.version."""
    from app.service import DEFAULT_REQUEST

    job = service.submit(dict(DEFAULT_REQUEST))
    with chromium(profile) as context:
        page = context.pages[0] if context.pages else context.new_page()
        scripts = []
        page.on("request", lambda request: scripts.append(request.url) if request.resource_type == "script" else None)
        page.goto(f"{url}/?analysis={job['id']}")
        wait_for_traces(page, "stacked-baseline", "synergy")
        version = page.evaluate("window.Plotly.version")
    return [s for s in scripts if "plotly" in s.rsplit("/", 1)[-1]], version


def test_first_view_loads_the_cartesian_bundle_only(server, tmp_path):
    from app.ui.plotly_bundle import installed_bundle, plotlyjs_version

    if installed_bundle() is None:
        pytest.skip("static/vendor has no cartesian plotly.js (python -m app.ui.plotly_bundle could not download it)")
    plotly_scripts, version = first_view_plotly(*server, tmp_path / "profile")
    assert version == plotlyjs_version()
    assert len(plotly_scripts) == 1 and "/assets/vendor/plotly-cartesian-" in plotly_scripts[0]


def test_without_the_bundle_the_page_draws_with_plotly_full_bundle(monkeypatch, tmp_path):
    from app.ui import plotly_bundle

    monkeypatch.setattr(plotly_bundle, "installed_bundle", lambda *args, **kwargs: None)  # set-up had no network
    with running_server(run_s=0.0) as (url, service):
        plotly_scripts, _ = first_view_plotly(url, service, tmp_path / "profile")
    assert len(plotly_scripts) == 1 and "/_dash-component-suites/plotly/package_data/plotly" in plotly_scripts[0]


@pytest.fixture(scope="module")
def hosted_server():
    with running_server(run_s=0.3, api_tokens=("s3cret",)) as (url, service):
        yield url, service


def submitted_id(page) -> str:
    page.wait_for_selector("#analysis-link", timeout=TIMEOUT_MS)
    return page.locator("#analysis-link").inner_text().removeprefix("analysis ").strip()


def test_hosted_token_tasks_bands_comparison_and_downloads(hosted_server, artifacts, tmp_path):
    url, _ = hosted_server
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=TIMEOUT_MS)
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_selector("text=needs a valid API token", timeout=TIMEOUT_MS)

        # with the token: two tasks and bootstrap resamples -> per-task overlay and confidence bands
        page.locator("#token").fill("s3cret")
        page.wait_for_function("document.querySelector('#tasks')?.innerText.includes('color')", timeout=TIMEOUT_MS)
        page.locator("#tasks").click()
        page.get_by_role("option", name="shape", exact=True).click()
        page.keyboard.press("Escape")
        page.locator("#bootstrap").fill("20")
        page.get_by_role("button", name="Run analysis").click()
        wait_for_traces(page, "stacked-baseline", "ci:synergy")
        first_id = submitted_id(page)
        open_tab(page, "Compare")
        wait_for_traces(page, "task-overlay", "shape")
        assert sorted(t["name"] for t in plot_data(page, "task-overlay")) == ["color", "shape"]

        # a second analysis (shape only), then overlay it on the first: correlations per term
        open_tab(page, "New analysis")
        page.locator("#tasks").click()  # multi-select: clicking a ticked option unticks it
        page.get_by_role("option", name="color", exact=True).click()
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function(f"document.querySelector('#analysis-link') && "
                               f"!document.querySelector('#analysis-link').innerText.includes('{first_id}')",
                               timeout=TIMEOUT_MS)
        second_id = submitted_id(page)
        assert second_id != first_id
        page.goto(f"{url}/?analysis={first_id}")
        open_tab(page, "Compare")
        # the browser remembers the analyses it opened: pick the second one from the list
        page.locator("#compare-recent").click()
        page.get_by_role("option").first.wait_for(timeout=TIMEOUT_MS)
        choices = page.get_by_role("option").all_inner_texts()
        assert [c for c in choices if second_id[:12] in c] and not [c for c in choices if first_id[:12] in c]
        page.get_by_role("option").filter(has_text=second_id[:12]).first.click()
        wait_for_traces(page, "comparison", "other:synergy")
        assert page.locator("#compare-id").input_value() == second_id
        assert "Layer-wise correlation" in page.locator("#correlations").inner_text()
        assert "+1.000" in page.locator("#correlations").inner_text()  # same layer curves in both
        page.screenshot(path=str(artifacts / "ui-06-compare-hosted.png"), full_page=True)

        # data downloads (CSV, JSON) and plot download as SVG from the modebar
        open_tab(page, "Results")
        with page.expect_download() as csv_download:
            page.get_by_role("button", name="Data CSV").click()
        assert csv_download.value.suggested_filename == f"pidflow-{first_id}.csv"
        assert "redundancy" in Path(csv_download.value.path()).read_text().splitlines()[0]
        with page.expect_download() as json_download:
            page.get_by_role("button", name="Data JSON").click()
        assert '"pidflow.result/1"' in Path(json_download.value.path()).read_text()
        page.locator("#plot-format").get_by_text("SVG").click()
        page.wait_for_function("document.querySelector('#stacked-baseline .js-plotly-plot')"
                               "._context.toImageButtonOptions.format === 'svg'", timeout=TIMEOUT_MS)
        page.locator("#stacked-baseline").hover()
        with page.expect_download() as svg_download:
            page.locator("#stacked-baseline .modebar-btn[data-title^='Download plot']").click()
        assert svg_download.value.suggested_filename.endswith(".svg")
        assert Path(svg_download.value.path()).read_text().lstrip().startswith("<svg")
