"""Nothing lost on restart, in the browser: `pidflow serve` on a data folder runs a small analysis, a
browser opens it and a share link; the server stops and starts again on the same folder; reloading the
page and opening the share link show the same plot (the embedded Redis keeps its append-only file)."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from app.embedded import stop_process
from app.redis_local import free_port
from app.served import spawn, stack_available, wait_healthy
from tests.browser.stack import CHROMIUM, chromium
from tests.browser.test_dashboard import ARTIFACTS, plot_data, wait_for_traces

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
              pytest.mark.skipif(not stack_available(), reason="worker/ and the demo model have not landed")]

SMALL = {"n_questions": 30, "dims": [2, 2, 1], "gaussianize": "none", "bootstrap": 0}


def test_results_and_share_links_survive_a_restart(tmp_path):
    env = {"PIDFLOW_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = spawn(port, workers=1, env=env)
    try:
        wait_healthy(base, server, workers=1, timeout_s=120)
        job = httpx.post(f"{base}/api/v1/analyses", json=SMALL, timeout=30).json()
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/api/v1/analyses/{job['id']}", timeout=10).json()["state"] != "succeeded":
            assert time.monotonic() < deadline, "the small analysis did not finish in 120 s"
            time.sleep(0.5)
        share = httpx.post(f"{base}/api/v1/analyses/{job['id']}/share", timeout=10).json()["ui_url"]
        with chromium(tmp_path / "profile") as context:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{base}/?analysis={job['id']}")
            wait_for_traces(page, "stacked-baseline", "synergy")
            before = plot_data(page, "stacked-baseline")

            stop_process(server, timeout_s=30)  # Ctrl-C, then run it again on the same data folder
            server = spawn(port, workers=0, env=env)
            wait_healthy(base, server, workers=0, timeout_s=60)

            page.reload()
            wait_for_traces(page, "stacked-baseline", "synergy")
            assert plot_data(page, "stacked-baseline") == before
            page.goto(share)
            wait_for_traces(page, "stacked-baseline", "synergy")
            assert plot_data(page, "stacked-baseline") == before and page.locator("#read-only-banner").is_visible()
            page.screenshot(path=str(ARTIFACTS / "restart-01-share-after-restart-1366.png"), full_page=False)
    finally:
        stop_process(server, timeout_s=30)
