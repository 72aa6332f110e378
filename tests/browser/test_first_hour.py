"""A new user's first hour in a real headless Chromium against a live server (uvicorn, API, the real
AnalysisService on a private Redis, a stand-in job layer): the first page opens on the finished demo
analysis, every view has its own URL (reload, back and a pasted link land on it). Screenshots at
1366x768 and 1920x1080 go to tests/artifacts/."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest

from app.service import DEFAULT_REQUEST
from tests.browser.stack import CHROMIUM, NUM_LAYERS, chromium, running_server
from tests.browser.test_dashboard import ARTIFACTS, TIMEOUT_MS, open_tab, pick, plot_data, wait_for_traces
from tests.ui.demo_result import layer_terms

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]


@pytest.fixture(scope="module")
def demo_server():
    """A server whose demo analysis (the default request) is finished, as `pidflow serve` leaves it."""
    with running_server(run_s=0.0) as (url, service):
        demo_id = service.submit(dict(DEFAULT_REQUEST))["id"]
        service.set_demo_analysis(demo_id)
        yield url, service, demo_id


def query_of(page) -> dict:
    return {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}


def wait_for_query(page, **expected):
    page.wait_for_function(
        """expected => { const q = new URLSearchParams(window.location.search);
                         return Object.entries(expected).every(([k, v]) => q.get(k) === v); }""",
        arg=expected, timeout=TIMEOUT_MS)


@pytest.mark.parametrize("width, height", [(1366, 768), (1920, 1080)])
def test_first_page_opens_on_the_demo_result(demo_server, tmp_path, width, height):
    url, _, demo_id = demo_server
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(tmp_path / "profile", width=width, height=height) as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        wait_for_traces(page, "stacked-baseline", "synergy")
        traces = {t["meta"]: t for t in plot_data(page, "stacked-baseline")}
        assert traces["unique_vision"]["y"] == pytest.approx([layer_terms(i)[1] for i in range(NUM_LAYERS + 1)])
        wait_for_query(page, analysis=demo_id, tab="results")  # the address now names what is shown
        assert page.locator("#result-message").inner_text().strip() == ""  # no red "No analysis open"
        box = page.locator("#stacked-baseline .nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 3 / NUM_LAYERS, box["y"] + box["height"] / 2)
        page.wait_for_selector("#stacked-baseline .hoverlayer .legend", timeout=TIMEOUT_MS)
        hover = page.locator("#stacked-baseline .hoverlayer").text_content()
        assert "layer 3" in hover and f"{sum(layer_terms(3)):.3f} bits" in hover  # the layer and its total
        page.screenshot(path=str(ARTIFACTS / f"first-01-demo-{width}.png"), full_page=False)
        assert not errors, errors


def test_every_view_has_its_own_url(demo_server, tmp_path):
    url, _, demo_id = demo_server
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url + "/")
        wait_for_traces(page, "stacked-baseline", "synergy")
        wait_for_query(page, analysis=demo_id, tab="results")

        open_tab(page, "Questions")
        wait_for_query(page, analysis=demo_id, tab="questions")
        pick(page, "question-pick", "image 3?")
        wait_for_traces(page, "question-figure", "baseline:synergy")
        wait_for_query(page, analysis=demo_id, tab="questions", q="easy-vqa.test.3")
        link = page.url

        page.reload()  # reload lands on the same question
        wait_for_traces(page, "question-figure", "baseline:synergy")
        assert "image 3?" in page.locator(".question-card").inner_text()
        assert query_of(page)["q"] == "easy-vqa.test.3"

        page.go_back()  # back: the question list, then the results tab of the same analysis
        page.wait_for_function("!new URLSearchParams(window.location.search).get('q')", timeout=TIMEOUT_MS)
        page.go_back()
        page.wait_for_function("document.querySelector('#tabs .tab--selected')?.innerText.includes('Results')",
                               timeout=TIMEOUT_MS)
        assert query_of(page)["tab"] == "results"

    with chromium(tmp_path / "other-profile", width=1920, height=1080) as fresh:  # a pasted link
        page = fresh.pages[0] if fresh.pages else fresh.new_page()
        page.goto(link)
        wait_for_traces(page, "question-figure", "baseline:synergy")
        assert "image 3?" in page.locator(".question-card").inner_text()
        page.screenshot(path=str(ARTIFACTS / "first-02-question-link-1920.png"), full_page=False)


@pytest.fixture(scope="module")
def slow_server():
    """Jobs take 60 s: long enough to see them run and cancel them."""
    with running_server(run_s=60.0) as (url, service):
        yield url, service


def test_costs_are_known_before_running_and_impossible_requests_are_refused_at_their_field(slow_server, tmp_path):
    url, _ = slow_server
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector("#estimate:has-text('Expected run time')", timeout=TIMEOUT_MS)
        assert "bias of the total" in page.locator("#estimate").inner_text()

        # too few questions for the PCA sizes: said next to the field, live and after Run; the form is kept
        page.locator("#n-questions").fill("3")
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_selector("#n-questions-error:has-text('questions in all')", timeout=TIMEOUT_MS)
        assert "need at least" in page.locator("#n-questions-error").inner_text()
        assert page.locator("#n-questions").input_value() == "3"
        assert "Cannot start" in page.locator("#submit-status").inner_text()
        # more questions than the task has: how many exist
        page.locator("#n-questions").fill("1500")
        page.wait_for_selector("#n-questions-error:has-text('1,280 test questions')", timeout=TIMEOUT_MS)
        page.locator("#n-questions").fill("400")
        page.locator("#dim-vision").fill("512")
        page.wait_for_selector("#dims-error:has-text('at most 64')", timeout=TIMEOUT_MS)  # the server's bound
        page.screenshot(path=str(ARTIFACTS / "first-03-refused-1366.png"), full_page=True)
        page.locator("#dim-vision").fill("8")
        page.wait_for_function("!document.querySelector('#dims-error').innerText", timeout=TIMEOUT_MS)


def test_cancel_a_running_analysis(slow_server, tmp_path):
    url, service = slow_server
    with chromium(tmp_path / "profile", width=1920, height=1080) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=TIMEOUT_MS)
        page.locator("#bootstrap").fill("3")  # a request of its own
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_selector("#cancel:visible", timeout=TIMEOUT_MS)
        assert page.get_by_role("button", name="Run analysis").is_disabled()  # one run at a time
        page.wait_for_function("document.querySelector('#submit-status').innerText.includes('left')",
                               timeout=TIMEOUT_MS)  # an estimate of the time left
        job_id = query_of(page)["analysis"]  # the running job has its URL too
        assert service.status(job_id)["state"] in ("queued", "running")
        page.screenshot(path=str(ARTIFACTS / "first-04-running-1920.png"), full_page=False)
        page.get_by_role("button", name="Cancel").click()
        page.wait_for_selector("#submit-status:has-text('Cancelled')", timeout=TIMEOUT_MS)
        assert page.get_by_role("button", name="Run analysis").is_enabled()
        assert not page.locator("#cancel").is_visible()
        with pytest.raises(KeyError):
            service.status(job_id)


def test_where_in_the_image_and_your_own_question(demo_server, tmp_path):
    from pidcore.data import find_image

    url, service, _ = demo_server
    knockout = service.submit({**DEFAULT_REQUEST, "knockout": {"edges": ["image->question"], "layers": [2, 3]},
                               "gaussianize": "copula"})  # copula: placing the own question takes < 1 s
    with chromium(tmp_path / "profile", width=1920, height=1080) as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/?analysis={knockout['id']}&tab=questions&q=easy-vqa.test.3")
        wait_for_traces(page, "attention-baseline", "attention:question")
        wait_for_traces(page, "attention-knockout", "attention:question")
        page.locator("#att-layer .rc-slider-handle, #att-layer [role=slider]").first.focus()
        for _ in range(2):  # to decoder layer 2, inside the knockout window
            page.keyboard.press("ArrowRight")
        page.wait_for_function("document.querySelector('#attention-knockout .gtitle, #attention-knockout .g-gtitle')"
                               "?.textContent.includes('decoder layer 2')", timeout=TIMEOUT_MS)
        knocked = plot_data(page, "attention-knockout")
        page.wait_for_function("""() => { const el = document.querySelector('#attention-knockout .js-plotly-plot');
                                   return el && el.data[0].z.flat().every(v => Math.abs(v) < 1e-6); }""",
                               timeout=TIMEOUT_MS)  # image->question blocked: the question tokens see no patch
        base = page.evaluate("document.querySelector('#attention-baseline .js-plotly-plot').data[0].z.flat()")
        assert len(base) == 16 and sum(base) > 0.01 and knocked
        page.screenshot(path=str(ARTIFACTS / "first-05-attention-1920.png"), full_page=True)

        # your own image and question
        page.locator("#own-image input[type=file]").set_input_files(str(find_image("easy-vqa.test.3")))
        page.locator("#own-text").fill("what color is the shape?")
        page.get_by_role("button", name="Ask the demo model").click()
        page.wait_for_selector("#own-answer:has-text('The demo model answers')", timeout=TIMEOUT_MS)
        wait_for_traces(page, "own-attention", "attention:question")
        page.wait_for_function(  # its pointwise terms among the analysis's questions (a refit: seconds, busy machine)
            "document.querySelector('#own-terms .js-plotly-plot')?.data?.some(t => t.meta === 'own:synergy')",
            timeout=90_000)
        assert len(plot_data(page, "own-terms")[-1]["y"]) == NUM_LAYERS + 1
        assert "placed among the 60 questions" in page.locator("#own-terms-note").inner_text()
        page.locator("#own-attention").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "first-06-own-question-1920.png"), full_page=False)
        page.locator("#own-terms").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "first-07-own-terms-1920.png"), full_page=False)
        assert not errors, errors
