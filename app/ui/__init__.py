"""The Dash dashboard: `create_dash_app(service)` builds it over an `AnalysisService`.

Layout (layout.py), callbacks (callbacks.py), figure builders (figures.py) and service access (data.py)
are kept apart; styles come from the repository's static/ folder.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


def create_dash_app(service, requests_pathname_prefix: str = "/"):
    """A `dash.Dash` app reading through `service`; mount its `.server` (WSGI) under the prefix."""
    import dash

    from app.ui import callbacks, data
    from app.ui.layout import build_layout

    app = dash.Dash(
        __name__, requests_pathname_prefix=requests_pathname_prefix, assets_folder=str(STATIC_DIR),
        title="pidflow", update_title=None, suppress_callback_exceptions=False, serve_locally=True,
    )

    def layout():
        try:
            models = data.models(service)
        except data.DataError:
            models = []
        try:
            datasets = data.datasets(service)
        except data.DataError:
            datasets = []
        return build_layout(models, datasets, data.hosted(service), _defaults())

    app.layout = layout
    app.index_string = app.index_string.replace("{%css%}", _preload_links(requests_pathname_prefix) + "{%css%}")
    callbacks.register(app, service)
    return app


def _defaults() -> dict:
    try:
        from app.service import DEFAULT_REQUEST
    except ImportError:
        return {}
    return dict(DEFAULT_REQUEST)


def _preload_links(prefix: str) -> str:
    """Fetch plotly.js and the graph chunk while the page boots (the graph asks for them only after
    the first callbacks): saves a network round on the first view."""
    base = prefix.rstrip("/") + "/_dash-component-suites"
    return "".join(f'<link rel="preload" href="{base}/{path}" as="script">'
                   for path in ("plotly/package_data/plotly.min.js", "dash/dcc/async-graph.js"))
