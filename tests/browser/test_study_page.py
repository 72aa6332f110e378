"""A study end to end through `pidflow serve` (private Redis, two real Celery workers sharing its parts and
each part's question shards): POST /api/v1/studies, per-part progress, the report checked against the single analysis it was built
from, CSV/HTML exports, a clear 422; then the study page in a real Chromium (small multiples, sweep
heatmap with term buttons, export buttons). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from app.served import served, stack_available
from tests.browser.stack import CHROMIUM, chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
              pytest.mark.skipif(not stack_available(), reason="the job layer or the demo model is missing")]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
STUDY = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 100, "gaussianize": "none",
         "dims": [3, 3, 2], "seed_variance": 0.8, "sweep": {"edges": ["image->question"], "k": 3},
         "recipes": ["pidflow", "seed"], "seed": 2, "bootstrap": 20}
SHARDS = {"PIDFLOW_EXTRACT_SHARD": "32"}  # each part's 100 questions in 4 shards that both workers take


@pytest.fixture(scope="module")
def finished_study():
    with served(workers=2, env=SHARDS) as root:
        bad = httpx.post(f"{root}/api/v1/studies", json={**STUDY, "tasks": ["nope"]}, timeout=30)
        submitted = httpx.post(f"{root}/api/v1/studies", json=STUDY, timeout=30)
        assert submitted.status_code == 202, submitted.text
        info = submitted.json()
        seen, deadline = [], time.monotonic() + 300
        while True:
            status = httpx.get(f"{root}{info['status_url']}", timeout=10).json()
            seen.append(status)
            assert status["state"] != "failed", status["error"]
            if status["state"] == "succeeded":
                break
            assert time.monotonic() < deadline, f"study did not finish: {status}"
            time.sleep(0.3)
        report = httpx.get(f"{root}{info['report_url']}", timeout=30).json()
        exports = {fmt: httpx.get(f"{root}{info['report_url']}?format={fmt}", timeout=30) for fmt in ("csv", "html")}
        yield root, info, bad, seen, report, exports


def test_study_through_the_api_and_two_workers(finished_study):
    from pidcore.pipeline.analysis import AnalysisRequest, run_analysis
    from pidcore.study.run import StudyRequest, analysis_request

    _, info, bad, seen, report, exports = finished_study
    assert bad.status_code == 422 and "unknown task(s) 'nope'" in bad.json()["detail"]
    assert [(p["model"], p["task"]) for p in seen[-1]["parts"]] == [("demo", "shape"), ("demo", "color")]
    overall = [s["progress"] for s in seen]
    assert overall[-1] == 1.0 and any(0 < p < 1 for p in overall), "progress was visible while running"
    assert any(0 < part["progress"] < 1 for s in seen for part in s["parts"]), "each part reports its progress"
    assert len(report["headline"]) == 2 * 2
    shards = report["timing"]["shards"]
    assert sorted((s["task"], *s["questions"]) for s in shards) == sorted(
        (task, start, min(start + 32, 100)) for task in ("shape", "color") for start in range(0, 100, 32))
    workers = {task: {s["worker"] for s in shards if s["task"] == task} for task in ("shape", "color")}
    assert max(len(names) for names in workers.values()) == 2, f"no part's shards were shared: {workers}"
    request = StudyRequest.from_dict(report["request"])
    for row in report["headline"]:
        part = next(p for p in report["parts"] if p["task"] == row["task"])
        dims = (part.get("seed_dims") or {}).get("dims")
        single = run_analysis(analysis_request(request, "demo", row["task"], row["recipe"], None, dims))
        last = single["runs"]["baseline"]["layers"][-1]
        assert isinstance(single, dict) and AnalysisRequest.from_dict(single["request"]).measure == row["measure"]
        assert row["total_bits"] == pytest.approx(last["total"], abs=1e-6)  # float32 rounding: threads differ
        for term, share in row["shares"].items():
            assert share == pytest.approx(last[term] / last["total"], abs=1e-6)
    rows = list(csv.DictReader(io.StringIO(exports["csv"].text)))
    assert exports["csv"].headers["content-type"].startswith("text/csv") and len(rows) > 100
    assert exports["html"].text.count('class="plotly-graph-div"') == 2 + 4


def test_study_page_in_a_browser(finished_study, tmp_path):
    root, info, *_ = finished_study
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(tmp_path / "profile", width=1400, height=900) as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{root}{info['page_url']}", timeout=90_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 6 * 3",
                               timeout=90_000)  # 1.5 MB of inline plotly.js on a busy 2-core machine
        grids = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => el.data.length)")
        assert grids[:2] == [6 * 2, 6 * 2], "small multiples: 4 terms + the total and its band x 2 tasks per recipe"
        page.screenshot(path=str(ARTIFACTS / "study-01-page.png"), full_page=True)
        findings = page.locator("h2", has_text="What the study found")
        assert findings.count() == 1 and page.locator("span.verdict").count() >= 3 * 4  # (a)-(c) per part x recipe
        for width, height in ((1366, 768), (1920, 1080)):  # the top of the page: what the study found
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / f"study-10-findings-{width}x{height}.png"))
        page.set_viewport_size({"width": 1400, "height": 900})
        heatmap = page.locator(".js-plotly-plot").nth(2)
        heatmap.scroll_into_view_if_needed()
        title = lambda: page.evaluate("document.querySelectorAll('.js-plotly-plot')[2].layout.title.text")  # noqa: E731
        assert "ΔU_vision" in title()
        heatmap.locator(".updatemenu-button").filter(has_text=re.compile(r"^S$")).first.click()
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot')[2].layout.title.text.includes('ΔS')")
        heatmap.screenshot(path=str(ARTIFACTS / "study-02-sweep-heatmap-synergy.png"))
        with page.expect_download() as download:
            page.get_by_text("Export CSV").click()
        saved = tmp_path / "study.csv"
        download.value.save_as(saved)
        assert saved.read_text().startswith("section,model,task,recipe,run,centre,layer,quantity,value,lo,hi")
        assert errors == []


def test_the_dashboard_lists_and_opens_the_study(finished_study, tmp_path):
    """The dashboard's Studies tab: a deep link opens the study (state, parts, links), the server's list
    links its page, and the page links back."""
    root, info, *_ = finished_study
    with chromium(tmp_path / "profile", width=1400, height=900) as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{root}/?tab=studies&study={info['id']}", timeout=90_000)
        view = page.locator("#study-view")
        view.get_by_text("succeeded, 100%").wait_for(timeout=60_000)
        rows = view.locator("tbody tr")
        assert rows.count() == 2, "one row per part (demo x shape, demo x color)"
        assert rows.all_inner_texts() == ["demo\tshape\t100%\tdone", "demo\tcolor\t100%\tdone"]
        listed = page.locator("#study-list a")
        listed.first.wait_for(timeout=30_000)
        assert listed.first.get_attribute("href") == f"/study/{info['id']}"
        page.screenshot(path=str(ARTIFACTS / "study-03-dashboard-tab.png"), full_page=True)
        view.get_by_text("Open the study page").click()
        page.wait_for_url(f"{root}/study/{info['id']}", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=90_000)
        page.get_by_text("← pidflow dashboard (Studies)").click()
        page.locator("#study-view").get_by_text("succeeded, 100%").wait_for(timeout=60_000)
        assert errors == []


def test_the_dashboard_starts_a_tiny_study_from_the_form(finished_study, tmp_path):
    """The Studies tab's form: a refusal shown next to its field, then a tiny study (demo model, one task,
    baseline + the seed's cut, pidflow's recipe) started, followed to the end and put in the address."""
    root, *_ = finished_study
    with chromium(tmp_path / "profile", width=1366, height=768) as context:
        page = context.pages[0] if context.pages else context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{root}/?tab=studies", timeout=90_000)
        page.locator("#study-n-questions").fill("0")
        page.get_by_role("button", name="Start study").click()
        page.locator("#study-n-questions-error").get_by_text("Questions per task must be an integer >= 1").wait_for(
            timeout=30_000)
        assert "Cannot start the study" in page.locator("#study-start-status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "study-04-form-refused-1366x768.png"))
        page.locator("#study-n-questions").fill("60")
        for name, value in (("vision", "2"), ("language", "2"), ("target", "2")):
            page.locator(f"#study-dim-{name}").fill(value)
        page.locator("#study-bootstrap").fill("10")
        page.locator("#study-gaussianize").click()
        page.get_by_role("option").filter(has_text="none (PCA only)").first.click()
        page.locator("#study-recipes label", has_text="pidflow's default").click()
        page.locator("#study-sweep input").uncheck()
        page.get_by_role("button", name="Start study").click()
        view = page.locator("#study-view")
        view.get_by_text("succeeded, 100%").wait_for(timeout=120_000)
        assert page.locator("#study-n-questions-error").inner_text() == ""
        assert view.locator("tbody tr").all_inner_texts() == ["demo\tcolor\t100%\tdone"]
        study_id = page.locator("#study-id").input_value()
        assert re.fullmatch(r"[0-9a-f]{32}", study_id) and page.url.endswith(f"/?tab=studies&study={study_id}")
        status = httpx.get(f"{root}/api/v1/studies/{study_id}", timeout=10).json()
        assert status["state"] == "succeeded" and [p["task"] for p in status["parts"]] == ["color"]
        report = httpx.get(f"{root}/api/v1/studies/{study_id}/report", timeout=30).json()
        assert report["request"]["n_questions"] == 60 and report["request"]["recipes"] == ["pidflow"]
        assert report["request"]["sweep"] is None and report["request"]["seed_cut"] is True
        listed = page.locator("#study-list tr", has_text=study_id[:12])
        listed.get_by_text("succeeded 100%").wait_for(timeout=30_000)  # the list follows the study's end
        view.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "study-05-form-started-1366x768.png"))
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.screenshot(path=str(ARTIFACTS / "study-06-form-started-1920x1080.png"), full_page=True)
        assert errors == []
