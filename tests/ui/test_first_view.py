"""The first view draws from the layout: the page's layout carries the Results tab of the analysis it
opens (no callback before the first plot), and `pidflow serve` asks for it once when the demo is ready."""

from __future__ import annotations

import httpx

from app.embedded import warm_first_page
from app.service import DEFAULT_REQUEST
from app.ui import callbacks
from tests.browser.stack import running_server
from tests.ui.demo_result import layer_terms


def test_the_layout_carries_the_results_of_the_analysis_it_opens():
    with running_server(run_s=0.0) as (url, service):
        demo = service.submit(dict(DEFAULT_REQUEST))["id"]
        service.set_demo_analysis(demo)
        view = callbacks.initial_view(service, "")  # "/" opens the demo analysis
        traces = {t["meta"]: t for t in view["results"]["figure:stacked-baseline"]["data"]}
        assert view["analysis"] == demo and list(traces["unique_vision"]["y"]) == [layer_terms(i)[1] for i in range(7)]
        assert view["results"]["knockout_hidden"] and view["results"]["story_hidden"] is False  # the demo's story
        assert "results" not in callbacks.initial_view(service, f"?analysis={demo}&tab=questions")

        callbacks.rendered_results.cache_clear()
        warm_first_page(url, f"{url}/?analysis={demo}")  # as `pidflow serve` does once the demo is ready
        assert callbacks.rendered_results.cache_info().currsize == 1
        layout = httpx.get(f"{url}/_dash-layout", headers={"Referer": f"{url}/"}).text
        assert '"meta":"unique_vision"' in layout.replace(" ", "")  # the plot's data is in the layout itself
        assert callbacks.rendered_results.cache_info().hits >= 1
        warm_first_page("http://127.0.0.1:9", "")  # nothing listening: a warm-up never fails the server
