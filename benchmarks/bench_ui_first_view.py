"""Dashboard first view of a cached result: seconds from navigation to the stacked plot drawn
(plotly's SVG holds the four area traces) in headless Chromium. Goal: <= 1.5 s on a fresh profile.

    python benchmarks/bench_ui_first_view.py [--profiles 3] [--repeats 5] [--n-questions 400] [--width 1366 --height 768]
                                             [--full-plotly]

Starts uvicorn with the API and the dashboard (real AnalysisService on a private Redis, the browser tests'
stand-in job layer whose result has the demo's size: N questions x 7 layers), submits the demo request
once so it is cached, asks for the first page once as `pidflow serve` does when its demo analysis is
ready (app.embedded.warm_first_page), then opens /?analysis=<id> in a fresh page per repeat. The first repeat is also
the browser's first visit (cold HTTP cache, no compiled-code cache). Browser, server and Redis share this
machine's cores. The page uses the cartesian plotly.js bundle from static/vendor/ when set-up installed it
(python -m app.ui.plotly_bundle); --full-plotly measures plotly.py's full bundle instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.embedded import warm_first_page  # noqa: E402
from app.service import DEFAULT_REQUEST  # noqa: E402
from app.ui import plotly_bundle  # noqa: E402
from tests.browser.stack import CHROMIUM, chromium, running_server  # noqa: E402

DRAWN = """() => { const el = document.querySelector('#stacked-baseline .js-plotly-plot');
    return el && el.querySelectorAll('.scatterlayer .trace').length >= 4; }"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="page loads per browser profile")
    parser.add_argument("--profiles", type=int, default=1, help="fresh browser profiles (each: one cold visit)")
    parser.add_argument("--n-questions", type=int, default=400)
    parser.add_argument("--width", type=int, default=1366)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--full-plotly", action="store_true", help="serve plotly.py's full plotly.js bundle")
    args = parser.parse_args()
    if args.repeats < 1 or args.n_questions < 1:
        parser.error("--repeats and --n-questions must be positive")
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    if args.full_plotly:
        plotly_bundle.installed_bundle = lambda *a, **k: None
    bundle = plotly_bundle.installed_bundle()
    cold, wall, in_page = [], [], []
    with running_server(run_s=0.0, n_questions=args.n_questions) as (url, service):
        job = service.submit(dict(DEFAULT_REQUEST))
        warm_first_page(url, f"{url}/?analysis={job['id']}")  # as `pidflow serve` does when its demo is ready
        for _ in range(args.profiles):
            with tempfile.TemporaryDirectory() as profile, chromium(Path(profile), args.width, args.height) as context:
                for repeat in range(args.repeats):
                    page = context.new_page()
                    start = time.perf_counter()
                    page.goto(f"{url}/?analysis={job['id']}")
                    page.wait_for_function(DRAWN, timeout=30_000, polling="raf")
                    (cold if repeat == 0 else wall).append(time.perf_counter() - start)
                    in_page.append(page.evaluate("performance.now()") / 1000)
                    page.close()
    print(f"first view of a cached result ({args.n_questions} questions x 7 layers, "
          f"{args.width}x{args.height}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}), "
          f"{args.profiles} fresh profile(s) x {args.repeats} page loads")
    print(f"  plotly.js               : {bundle.name if bundle else 'full bundle (plotly/package_data/plotly.min.js)'}")
    print(f"  cold (first visit)      : {', '.join(f'{t:.2f}' for t in cold)} s")
    if wall:
        print(f"  repeat visits           : median {statistics.median(wall):.2f} s, "
              f"min {min(wall):.2f} s, max {max(wall):.2f} s")
    print(f"  page clock (navigation start -> drawn): median {statistics.median(in_page):.2f} s")
    print(f"  goal <= 1.5 s for a first visit: {'met' if max(cold) <= 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
