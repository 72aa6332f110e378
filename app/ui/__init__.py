"""The Dash dashboard: `create_dash_app(service)` builds it over an `AnalysisService`.

Layout (layout.py), callbacks (callbacks.py, upload_ and analyses_callbacks.py), figure builders (figures.py) and service access (data.py)
are kept apart; styles and scripts come from `STATIC_DIR` (see `static_dir`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

VENDOR_SUBDIR = "vendor"  # plotly.js and the API docs UI (app/ui/plotly_bundle.py, app/docs_assets.py)


def static_dir() -> Path:
    """The folder the dashboard's CSS, scripts and vendored files are served from.

    An installed wheel carries them as package data (app/ui/static/, copied there from the repository's
    top-level static/ and vendored when the wheel is built: setup.py), found with importlib.resources; a
    checkout (or an editable install) has no app/ui/static/ and serves the repository's static/ itself.
    """
    packaged = resources.files(__name__) / "static"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "static"


STATIC_DIR = static_dir()


def create_dash_app(service, requests_pathname_prefix: str = "/"):
    """A `dash.Dash` app reading through `service`; mount its `.server` (WSGI) under the prefix."""
    import dash

    from app.service import DEFAULT_REQUEST
    from app.ui import analyses_callbacks, callbacks, data, study_callbacks, upload_callbacks
    from app.ui.layout import build_layout

    plotly_url = _plotly_url(requests_pathname_prefix)
    app = dash.Dash(
        __name__, requests_pathname_prefix=requests_pathname_prefix, assets_folder=str(STATIC_DIR),
        assets_path_ignore=[VENDOR_SUBDIR], title="pidflow", update_title=None,
        suppress_callback_exceptions=False, serve_locally=True,
        # a plain <script> before dash's own: window.Plotly is set, so dcc.Graph never fetches the full bundle
        external_scripts=[plotly_url] if plotly_url else [],
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
        from app.precheck import dataset_available

        datasets = [{**d, "unavailable": dataset_available(d.get("name"))} for d in datasets]
        return build_layout(models, datasets, data.hosted(service), dict(DEFAULT_REQUEST),
                            initial=callbacks.initial_view(service, _page_query()),
                            upload_limit=data.upload_limit(service))

    app.layout = layout
    app.index_string = app.index_string.replace(
        "{%css%}", _preload_links(requests_pathname_prefix, plotly_url) + "{%css%}")
    callbacks.register(app, service)
    upload_callbacks.register(app, service)
    study_callbacks.register(app, service)
    analyses_callbacks.register(app, service)
    return app


def _page_query() -> str:
    """The query of the page whose layout is asked for: /_dash-layout is fetched by that page, so its
    Referer is the page's address (same origin: the full URL)."""
    try:
        import flask

        referrer = flask.request.referrer if flask.has_request_context() else None
    except ImportError:
        return ""
    from urllib.parse import urlsplit

    return urlsplit(referrer or "").query


def _plotly_url(prefix: str) -> str | None:
    """URL of the installed cartesian plotly.js bundle, or None (dash then serves plotly.py's full one)."""
    from app.ui.plotly_bundle import installed_bundle

    bundle = installed_bundle()
    return f"{prefix.rstrip('/')}/assets/{VENDOR_SUBDIR}/{bundle.name}" if bundle else None


def _preload_links(prefix: str, plotly_url: str | None) -> str:
    """Fetch plotly.js and the graph chunk while the page boots (the graph asks for them only after
    the first callbacks): saves a network round on the first view."""
    base = prefix.rstrip("/") + "/_dash-component-suites"
    urls = [plotly_url or f"{base}/plotly/package_data/plotly.min.js", f"{base}/dash/dcc/async-graph.js"]
    return "".join(f'<link rel="preload" href="{url}" as="script">' for url in urls)
