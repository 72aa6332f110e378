"""The Results tab: the plots of an open analysis (built once per analysis, mode and format), its summary,
notes and knockout effects, the plot format, downloads and the read-only share link."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from dash import Input, Output, State, ctx, dcc, html, no_update

from app.ui import data, figures, wording
from app.ui.layout import graph_config, help_mark

RECENT_KEPT = 20  # analyses remembered per browser for the Compare tab
GRAPH_IDS = ("stacked-baseline", "stacked-knockout", "difference", "task-overlay", "comparison", "question-figure")
MAIN_GRAPHS = ("stacked-baseline", "stacked-knockout", "difference")  # the Results tab's plots


def remember(recent: list | None, analysis_id: str, label: str, keep: int = RECENT_KEPT) -> list[dict]:
    """`recent` with this analysis first (once), at most `keep` entries: [{id, label}, ...]."""
    others = [entry for entry in recent or [] if isinstance(entry, dict) and entry.get("id") != analysis_id]
    return [{"id": analysis_id, "label": label}, *others][:keep]


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return wording.fmt(value, 3, signed=True) if isinstance(value, float) else str(value)


def _humanize(key: str) -> str:
    return key.replace("_", " ")


def _metric_name(key: str) -> tuple[str, str | None]:
    """A metric's plain name and its one-line help (the last part of a nested key decides)."""
    last = key.rsplit(".", 1)[-1]
    if last in wording.EFFECT_NAMES:
        name, help_text = wording.EFFECT_NAMES[last]
        prefix = key[: -len(last)].replace(".", " · ")
        return f"{_humanize(prefix)}{name}", help_text
    return _humanize(key.replace(".", " · ")), None


def effects_table(document: dict) -> html.Div:
    """Knockout effect metrics (pidcore.pipeline.effects output) plus answer probability and accuracy change, each
    with its plain name and a "?" saying what it is."""
    effects = document.get("effects")
    runs = document.get("runs") or {}
    baseline, knockout = runs.get("baseline") or {}, runs.get("knockout") or {}
    if not knockout:
        return html.Div("No knockout in this analysis, so no knockout effects.", className="hint")
    intervals = (effects or {}).get("intervals") or {}
    descriptions = (effects or {}).get("descriptions") or {}
    shown = {k: v for k, v in (effects or {}).items() if k not in ("intervals", "descriptions", "interval_note",
                                                                   "per_layer")}
    flat = _flatten(shown) if isinstance(effects, dict) else []
    headline = [(name, value) for name, value in flat if not isinstance(value, str)]
    rows = headline + [(name, value) for name, value in flat if isinstance(value, str)]  # layer lists last
    named = {_metric_name(name)[0] for name, _ in flat}
    for key in ("accuracy", "mean_p_correct"):
        if _metric_name(key)[0] not in named and isinstance(baseline.get(key), int | float) and \
                isinstance(knockout.get(key), int | float):
            rows.insert(len(headline), (key, knockout[key] - baseline[key]))
    if not rows:
        return html.Div("This analysis reports no knockout effect metrics.", className="hint")
    cells = []
    for key, value in rows:
        name, help_text = _metric_name(key)
        help_text = descriptions.get(key, help_text)
        heading = [name, " ", help_mark(help_text)] if help_text else name
        interval = intervals.get(key)
        span = f"[{_number(interval[0])}, {_number(interval[1])}]" if interval else ""
        noise = " within noise" if interval and interval[0] <= 0 <= interval[1] else ""
        cells.append(html.Tr([html.Th(heading), html.Td(_number(value)), html.Td(span + noise, className="interval")]))
    window = wording.knockout_window(document)
    note = (effects or {}).get("interval_note")
    return html.Div([
        html.H3("Knockout effects" + (f" ({window})" if window else "")),
        html.Table(className="metrics", children=[
            html.Thead(html.Tr([html.Th("metric"), html.Th("value"), html.Th("95% interval" if intervals else "")])),
            html.Tbody(cells)]),
        html.Div("Information quantities in bits; probability and accuracy changes are knockout - baseline."
                 + (f" Intervals: {note}." if note else " No intervals (bootstrap 0)."), className="hint"),
    ])


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) pairs of the numeric leaves; short number lists joined as text."""
    rows = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, list):
            if all(isinstance(v, int | float) for v in value) and len(value) <= 4:
                rows.append((name, ", ".join(_number(v) for v in value)))
        else:
            rows.append((name, value))
    return rows


def _summary(document: dict, analysis_id: str) -> list:
    baseline = (document.get("runs") or {}).get("baseline") or {}
    layers = figures.run_layers(document, "baseline")
    accuracy = baseline.get("accuracy")
    parts = [figures.describe(document), f"{document.get('n_questions', '?')} questions",
             f"{len(layers)} layers"]
    if isinstance(accuracy, int | float):
        parts.append(f"baseline accuracy {accuracy:.0%}")
    chosen = list(dict.fromkeys(layer.get("gaussianization") for layer in baseline.get("layers") or []
                                if layer.get("gaussianization")))
    if chosen:
        parts.append("Gaussianization " + "; ".join(chosen))
    window = wording.knockout_window(document)
    if window:
        parts.append(window)
    return [html.Span(" · ".join(parts)), " · ",
            html.A(f"analysis {analysis_id}", href=f"?analysis={analysis_id}", id="analysis-link")]


def layer_notes(document: dict) -> list | None:
    """What the pipeline had to do, per run and layer (components capped at the data's rank, degenerate
    latents regularised), as a short list for the result page; None when there is nothing to say."""
    notes = {}  # the messages name their layer; one naming none is repeated on every layer: say it once
    for run_name, run in (document.get("runs") or {}).items():
        for layer in (run or {}).get("layers") or []:
            notes.update(dict.fromkeys(f"{run_name}: {wording.plain_note(text)}"
                                       for text in layer.get("warnings") or []))
    if not notes:
        return None
    return [html.Span("Notes from the estimator (not errors): "), html.Ul([html.Li(note) for note in notes])]


def demo_story(document: dict) -> list:
    """What the first page shows, in three sentences."""
    request = document.get("request") or {}
    tasks = ", ".join(request.get("tasks") or [])
    return [
        html.B("This is the demo analysis. "),
        f"The bundled small vision-language model answered {document.get('n_questions', '?')} easy-VQA "
        f"questions ({tasks}) about pictures of one coloured shape. For every layer, the plot splits what the "
        "image representation and the question representation carry about the model's answer into what they "
        "share, what each has alone, and what only the two together give (bits). ",
        "Try your own settings under New analysis, or open one question under Questions.",
    ]


def register(app, service) -> None:
    """The Results tab's callbacks."""
    main_graphs = MAIN_GRAPHS
    result_outputs = {
        **{f"figure:{g}": Output(g, "figure") for g in main_graphs},
        **{f"config:{g}": Output(g, "config") for g in main_graphs},
        **{f"caption:{g}": Output(f"{g}-caption", "children") for g in main_graphs},
        **{f"method:{g}": Output(f"{g}-method", "children") for g in main_graphs},
        "effects": Output("effects", "children"), "summary": Output("result-summary", "children"),
        "message": Output("result-message", "children"), "notes": Output("result-notes", "children"),
        "tasks": Output("question-task", "options"), "recent": Output("recent-analyses", "data"),
        "columns": Output("run-columns", "className"), "knockout_hidden": Output("stacked-knockout-block", "hidden"),
        "difference_hidden": Output("difference-block", "hidden"),
        "story": Output("demo-story", "children"), "story_hidden": Output("demo-story", "hidden"),
    }

    @app.callback(output=result_outputs, inputs={"analysis_id": Input("analysis-id", "data"),
                                                 "mode": Input("mode", "value"),
                                                 "recent": State("recent-analyses", "data"),
                                                 "fmt": State("plot-format", "value")})
    def render_results(analysis_id, mode, recent, fmt):
        out = {key: None for key in result_outputs}
        out.update({"tasks": [], "recent": no_update, "columns": "one-column", "knockout_hidden": True,
                    "difference_hidden": True, "story_hidden": True})
        out.update({f"config:{g}": graph_config(fmt or "png", g) for g in main_graphs})
        if not analysis_id:
            empty = figures.message_figure("No analysis open yet.")
            out.update({f"figure:{g}": empty for g in main_graphs})
            out["notes"] = "No analysis open yet: choose the settings under New analysis and press Run analysis."
            return out
        try:
            data.status(service, analysis_id)  # still there (a deleted analysis is not served from the cache)
            rendered, label = rendered_results(service, analysis_id, mode, fmt or "png")
        except data.DataError as exc:
            failed = figures.message_figure("No result to show.")
            out.update({f"figure:{g}": failed for g in main_graphs})
            out["message"] = f"Cannot show analysis {analysis_id}: {exc}"
            return out
        return {**out, **rendered, "recent": remember(recent, analysis_id, label)}

    @app.callback(
        [Output(g, "config", allow_duplicate=True) for g in GRAPH_IDS],
        [Output(g, "figure", allow_duplicate=True) for g in GRAPH_IDS],
        Input("plot-format", "value"), State("analysis-id", "data"), [State(g, "figure") for g in GRAPH_IDS],
        prevent_initial_call=True,
    )
    def plot_format(fmt, analysis_id, *current):
        # dcc.Graph re-plots (and so applies a new config) only when its figure changes: send them back
        try:
            document = data.result(service, analysis_id) if analysis_id else {}
        except data.DataError:
            document = {}
        names = [wording.export_filename(document, analysis_id, g) if analysis_id else g for g in GRAPH_IDS]
        return [graph_config(fmt, name) for name in names] + [fig if fig else no_update for fig in current]

    @app.callback(
        Output("download", "data"),
        Input("download-csv-button", "n_clicks"), Input("download-json-button", "n_clicks"),
        State("analysis-id", "data"), prevent_initial_call=True,
    )
    def download(_csv, _json, analysis_id):
        if not analysis_id:
            return no_update
        try:
            if ctx.triggered_id == "download-csv-button":
                return dcc.send_string(data.result_csv(service, analysis_id), f"pidflow-{analysis_id}.csv")
            return dcc.send_string(data.result_json(service, analysis_id), f"pidflow-{analysis_id}.json")
        except data.DataError:
            return no_update

    @app.callback(
        Output("share-link", "value"),
        Input("share-button", "n_clicks"), State("analysis-id", "data"), State("url", "href"),
        State("token", "value"), prevent_initial_call=True,
    )
    def share(_clicks, analysis_id, href, token):
        if not analysis_id:
            return "Open an analysis first."
        try:
            share_token = data.create_share(service, analysis_id, data.writer(service, token))
        except data.DataError as exc:
            return f"Cannot create a link: {exc}"
        public = getattr(getattr(service, "settings", None), "public_url", "") or ""
        parts = urlsplit(href or "")
        base = public or (f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else "")
        return f"{base}?share={share_token}"


@lru_cache(maxsize=32)
def rendered_results(service, analysis_id: str, mode: str = "bits", fmt: str = "png") -> tuple[dict, str]:
    """The Results tab of a finished analysis ({output key of render_results: value}, and its label for the
    recent list). Its result never changes under its id, so it is built once per (analysis, mode, format):
    a reload or another browser gets it without rebuilding the figures, and the page's layout carries it
    for the first view (no callback round trip before the plot)."""
    document = data.result(service, analysis_id)
    tasks = sorted({q.get("task") for q in document.get("questions") or [] if q.get("task")})
    has_knockout = bool(figures.run_layers(document, "knockout"))
    y_max = figures.shared_y_max(document)
    caption, method = wording.target_sentence(document), wording.method_note(document)
    runs = {"stacked-baseline": "baseline", "stacked-knockout": "knockout", "difference": "knockout - baseline"}
    subtitles = {g: wording.describe_export(document, analysis_id, run) for g, run in runs.items()}
    out = {
        "figure:stacked-baseline": figures.stacked_figure(document, "baseline", mode, y_max=y_max,
                                                          subtitle=subtitles["stacked-baseline"]).to_plotly_json(),
        "figure:stacked-knockout": figures.stacked_figure(document, "knockout", mode, y_max=y_max,
                                                          title="Knockout: decomposition per layer",
                                                          subtitle=subtitles["stacked-knockout"]).to_plotly_json(),
        "figure:difference": figures.difference_figure(document, subtitle=subtitles["difference"]).to_plotly_json(),
        **{f"config:{g}": graph_config(fmt, wording.export_filename(document, analysis_id, g))
           for g in MAIN_GRAPHS},
        **{f"caption:{g}": caption for g in MAIN_GRAPHS if g != "difference"},
        "caption:difference": wording.difference_sentence(document),  # its bands are paired
        **{f"method:{g}": method for g in MAIN_GRAPHS},
        "effects": effects_table(document), "summary": _summary(document, analysis_id),
        "notes": layer_notes(document), "tasks": [{"label": t, "value": t} for t in tasks],
        "columns": "two-columns" if has_knockout else "one-column",
        "knockout_hidden": not has_knockout, "difference_hidden": not has_knockout,
    }
    try:
        is_demo = analysis_id == data.demo_analysis(service)
    except data.DataError:
        is_demo = False
    if is_demo:
        out.update({"story": demo_story(document), "story_hidden": False})
    return out, f"{figures.describe(document)} · {document.get('n_questions', '?')} q"
