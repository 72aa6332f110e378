"""The Analyses tab in a real headless Chromium against a live server (open mode, a stand-in job layer):
the server's list with what each analysis asked for, search, paging, Re-open to its deep link and Delete
after a confirm. Screenshots at 1366x768 and 1920x1080 go to tests/artifacts/."""

from __future__ import annotations

import os

import pytest

from app.service import DEFAULT_REQUEST
from tests.browser.stack import CHROMIUM, chromium, running_server
from tests.browser.test_dashboard import ARTIFACTS, open_tab, wait_for_traces
from tests.browser.test_first_hour import wait_for_query

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")]

TIMEOUT_MS = 45_000  # the machine is shared: generous
KNOCKOUT = {"edges": ["image->question"], "layers": [0, 2]}


def rows(page):
    return page.locator("#analyses-table tr.analysis-row")


def wait_for_rows(page, count: int):
    page.wait_for_function("n => document.querySelectorAll('#analyses-table tr.analysis-row').length === n",
                           arg=count, timeout=TIMEOUT_MS)


def settled(page):
    """The table's callbacks answered (a search triggers the pager and the listing: the table can be drawn
    twice, and a click on the first drawing would be lost)."""
    page.wait_for_function("!document.querySelector('#analyses-table[data-dash-is-loading], "
                           "#analyses-offset[data-dash-is-loading]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)


def test_list_search_page_reopen_and_delete(tmp_path):
    with running_server(run_s=0.0) as (url, service):
        demo = service.submit(dict(DEFAULT_REQUEST))["id"]
        service.set_demo_analysis(demo)
        shape = service.submit({**DEFAULT_REQUEST, "tasks": ["shape"]})["id"]
        knockout = service.submit({**DEFAULT_REQUEST, "knockout": KNOCKOUT})["id"]
        for seed in range(1, 10):  # 12 in all: two pages of 10
            service.submit({**DEFAULT_REQUEST, "seed": seed})
        ARTIFACTS.mkdir(exist_ok=True)
        with chromium(tmp_path / "profile") as context:
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            wait_for_traces(page, "stacked-baseline", "synergy")
            open_tab(page, "Analyses")
            wait_for_rows(page, 10)
            assert page.locator("#analyses-range").inner_text() == "1-10 of 12 analyses"
            page.get_by_role("button", name="Next").click()
            page.wait_for_selector("#analyses-range:has-text('11-12 of 12')", timeout=TIMEOUT_MS)
            wait_for_rows(page, 2)
            assert rows(page).last.locator("code").get_attribute("title") == demo  # the oldest, last
            assert rows(page).last.locator(".tag").all_inner_texts() == ["open", "demo"]  # "/" opened the demo

            search = page.locator("#analyses-search")
            search.fill("knockout")
            search.press("Enter")
            page.wait_for_selector("#analyses-range:has-text('1-1 of 1 analysis')", timeout=TIMEOUT_MS)
            cells = rows(page).first.locator("td").all_inner_texts()
            assert cells[:5] == [knockout[:12], "demo", "color (400 q)", "image->question in layers 0-2",
                                 "succeeded"]
            search.fill("shape")
            search.press("Enter")
            page.wait_for_selector(f"#analyses-table code[title='{shape}']", timeout=TIMEOUT_MS)
            wait_for_rows(page, 1)
            settled(page)
            page.screenshot(path=str(ARTIFACTS / "analyses-01-search-1366.png"), full_page=False)

            rows(page).first.get_by_role("link", name="Re-open").click()  # its deep link, in Results
            wait_for_query(page, analysis=shape, tab="results")
            page.wait_for_selector("#result-summary:has-text('shape')", timeout=TIMEOUT_MS)

            open_tab(page, "Analyses")  # the search is kept; the analysis now open is marked
            page.wait_for_selector(f"#analyses-table tr.is-open code[title='{shape}']", timeout=TIMEOUT_MS)
            search = page.locator("#analyses-search")
            search.fill("")
            search.press("Enter")
            wait_for_rows(page, 10)
            settled(page)
            page.on("dialog", lambda dialog: dialog.accept())  # the confirm of Delete
            row = rows(page).filter(has=page.locator(f"code[title='{knockout}']"))
            row.get_by_role("button", name="Delete").click()
            page.wait_for_selector(f"#analyses-message:has-text('Deleted analysis {knockout}')", timeout=TIMEOUT_MS)
            page.wait_for_selector("#analyses-range:has-text('of 11 analyses')", timeout=TIMEOUT_MS)
            assert page.locator(f"#analyses-table code[title='{knockout}']").count() == 0
            with pytest.raises(KeyError):
                service.status(knockout)
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.screenshot(path=str(ARTIFACTS / "analyses-02-deleted-1920.png"), full_page=False)
            assert not errors, errors
