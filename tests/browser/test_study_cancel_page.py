"""The Studies tab in a real Chromium: a queued study's Cancel button (the study becomes "cancelled" and the
button goes), and a read-only share view that shows the study but no "Start a study" form. The server is the
real service and dashboard on a private Redis with no worker, so a submitted study stays queued until
cancelled. Screenshots at 1366x768 and 1920x1080 go to tests/artifacts/."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.browser.stack import CHROMIUM, chromium, running_server

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
STUDY = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 120, "recipes": ["pidflow"], "bootstrap": 0}


def test_cancel_a_queued_study_and_the_share_view_has_no_form(tmp_path, monkeypatch):
    ARTIFACTS.mkdir(exist_ok=True)
    with running_server(run_s=0.2) as (root, service):
        monkeypatch.setenv("REDIS_URL", service.settings.redis_url)  # worker.studies' Redis: the server's
        analysis = service.submit({"n_questions": 50, "bootstrap": 0})["id"]
        while service.status(analysis)["state"] != "succeeded":
            time.sleep(0.1)
        share = service.create_share(analysis)["share_token"]
        study = httpx.post(f"{root}/api/v1/studies", json=STUDY, timeout=30).json()
        assert study["state"] == "queued"

        with chromium(tmp_path / "profile", width=1366, height=768) as context:
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{root}/?tab=studies&study={study['id']}", timeout=90_000)
            view = page.locator("#study-view")
            view.get_by_text("queued, 0%").wait_for(timeout=60_000)
            button = page.get_by_role("button", name="Cancel study")
            assert button.is_visible() and page.locator("#study-form-box").is_visible()
            button.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "study-07-queued-cancel-1366x768.png"))
            button.click()
            page.locator("#study-cancel-status").get_by_text("cancelled: its queued and running parts stop").wait_for(
                timeout=30_000)
            view.get_by_text("cancelled, 0%").wait_for(timeout=30_000)
            assert view.locator("tbody tr").all_inner_texts() == ["demo\tshape\t0%\tcancelled",
                                                                 "demo\tcolor\t0%\tcancelled"]
            assert not button.is_visible()
            page.screenshot(path=str(ARTIFACTS / "study-08-cancelled-1366x768.png"))
            assert errors == []
        status = httpx.get(f"{root}/api/v1/studies/{study['id']}", timeout=10).json()
        assert status["state"] == "cancelled"

        with chromium(tmp_path / "profile2", width=1920, height=1080) as context:
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{root}/?share={share}&tab=studies&study={study['id']}", timeout=90_000)
            page.locator("#read-only-banner").wait_for(state="visible", timeout=60_000)
            page.locator("#study-view").get_by_text("cancelled, 0%").wait_for(timeout=60_000)
            page.locator("#study-form-box").wait_for(state="hidden", timeout=30_000)
            assert not page.get_by_role("button", name="Start study").is_visible()
            assert not page.get_by_role("button", name="Cancel study").is_visible()
            page.screenshot(path=str(ARTIFACTS / "study-09-share-view-1920x1080.png"), full_page=True)
            assert errors == []
