"""Dash callbacks: wire the layout to `data` (the service) and `figures` (the plots)."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qs, urlencode, urlsplit

from dash import Input, Output, State, ctx, dcc, html, no_update

from app.ui import data, figures, wording
from app.ui.layout import DEFAULT_LAYERS, edge_options, graph_config, help_mark, layer_marks, model_summary
from pidcore import costs

RECENT_KEPT = 20  # analyses remembered per browser for the Compare tab
GRAPH_IDS = ("stacked-baseline", "stacked-knockout", "difference", "task-overlay", "comparison", "question-figure")
ACTIVE_STATES = ("queued", "running")
MAIN_GRAPHS = ("stacked-baseline", "stacked-knockout", "difference")  # the Results tab's plots


TABS = ("new", "results", "compare", "questions", "studies", "analyses")
VIEW_KEYS = ("share", "analysis", "tab", "q")  # what a view's URL holds, in this order


def parse_location(search: str | None) -> dict:
    """The view in the URL query: `analysis=<id>` or `share=<token>`, `tab`, `q` (a question id)."""
    query = parse_qs((search or "").lstrip("?"))
    return {key: values[0] for key, values in query.items() if values and values[0]}


def view_search(analysis_id: str | None, tab: str | None, question: str | None, share: str | None = None,
                study: str | None = None) -> str:
    """The URL query of a view (`?analysis=..&tab=..&q=..`; a shared view keeps `share=` instead of the id;
    the Studies tab keeps the study it shows, `study=`); "" when no analysis is open. The inverse of
    `parse_location`."""
    if not (analysis_id or share):
        return ""
    parts = {"share": share} if share else {"analysis": analysis_id}
    if tab in TABS:
        parts["tab"] = tab
    if question and tab == "questions":
        parts["q"] = question
    if study and tab == "studies":
        parts["study"] = study
    return "?" + urlencode(parts)


def wanted_tab(query: dict, default: str = "results") -> str:
    """The tab the URL asks for (its `tab` when valid, else `default`)."""
    return query.get("tab") if query.get("tab") in TABS else default


def analysis_ref(text: str | None) -> str:
    """The analysis id in what a user pasted: an id, or a dashboard link with `?analysis=<id>`."""
    text = (text or "").strip()
    if "?" in text:
        return parse_location(urlsplit(text).query).get("analysis", text)
    return text


def remember(recent: list | None, analysis_id: str, label: str, keep: int = RECENT_KEPT) -> list[dict]:
    """`recent` with this analysis first (once), at most `keep` entries: [{id, label}, ...]."""
    others = [entry for entry in recent or [] if isinstance(entry, dict) and entry.get("id") != analysis_id]
    return [{"id": analysis_id, "label": label}, *others][:keep]


def recent_options(recent: list | None, current: str | None) -> list[dict]:
    """Dropdown options for the analyses this browser opened, the one shown excluded."""
    return [{"label": f"{entry.get('label', '')} · {entry['id'][:12]}", "value": entry["id"]}
            for entry in recent or [] if isinstance(entry, dict) and entry.get("id") and entry["id"] != current]


def build_request(model, dataset, tasks, n_questions, pooling, target, measure, dims, bootstrap,
                  edges, window, gaussianize: str = "auto") -> dict:
    """The AnalysisRequest dict from the form; ValueError naming the field when a value is missing."""
    if not tasks:
        raise ValueError("pick at least one task")
    if not isinstance(n_questions, int) or n_questions < 1:
        raise ValueError("questions per task must be a positive whole number")
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError("PCA sizes must be three positive whole numbers")
    if bootstrap is None or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError("bootstrap resamples must be a whole number >= 0")
    knockout = None
    if edges:
        knockout = {"edges": list(edges), "layers": [int(window[0]), int(window[1])]}
    return {"model": model, "dataset": dataset, "tasks": list(tasks), "split": "test",
            "n_questions": n_questions, "correct_only": False, "language_pooling": pooling,
            "target": target, "measure": measure, "dims": list(dims), "gaussianize": gaussianize or "auto",
            "bootstrap": bootstrap, "knockout": knockout, "seed": 0}


STAGE_WORDS = {"queued": "waiting for a worker", "extract": "running the model over the questions",
               "analyze": "estimating the decomposition per layer", "finalize": "assembling the result"}


def _progress_text(job: dict, position: int | None = None, now: float | None = None) -> str:
    """"Analysis <id>: <stage in words> (42 %), about 30 s left" (+ queue position while it waits)."""
    import time

    stage = job.get("stage") or job.get("state")
    progress = float(job.get("progress") or 0.0)
    percent = int(round(100 * progress))
    text = f"Analysis {job['id']}: {STAGE_WORDS.get(stage, stage)} ({percent} %)"
    if job.get("state") == "queued" and position is not None:
        text += f", {position} analysis{'es' if position != 1 else ''} ahead in the queue" if position else \
            ", next in the queue"
    elapsed = (now or time.time()) - float(job.get("created_at") or now or time.time())
    if job.get("state") == "running" and progress >= 0.05 and elapsed > 0:
        left = elapsed * (1 - progress) / progress
        text += f", {costs.describe_seconds(left)} left"
    if job.get("message"):
        text += f" — {job['message']}"
    return text


FORM_FIELDS = {"n_questions": "n-questions", "dims": "dims", "bootstrap": "bootstrap", "tasks": "tasks",
               "dataset": "dataset", "model": "model", "knockout": "knockout", "gaussianize": "gaussianize",
               "measure": "measure", "target": "target", "language_pooling": "pooling"}
FORM_ERROR_IDS = tuple(dict.fromkeys(FORM_FIELDS.values()))


def form_field_of(message: str) -> str | None:
    """The request field a message is about (app.precheck.field_of, and the form's own wording)."""
    from app.precheck import field_of

    lowered = message.lower()
    for words, name in (("questions per task", "n_questions"), ("pca sizes", "dims"),
                        ("bootstrap resamples", "bootstrap"), ("at least one task", "tasks")):
        if lowered.startswith(words) or f" {words}" in lowered[:40]:
            return name
    return field_of(message)


def plain_message(message: str) -> str:
    """A service message in the form's words: API field names (n_questions, dims, ...) replaced by the
    labels people see."""
    from app.precheck import FIELD_LABELS

    for name in sorted((n for n in FIELD_LABELS if "_" in n or n == "dims"), key=len, reverse=True):
        message = re.sub(rf"\b{name}\b", FIELD_LABELS[name], message)
    return message[:1].upper() + message[1:] if message else message


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
    """Knockout effect metrics (pidcore.effects output) plus answer probability and accuracy change, each
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
    """Attach every callback of the dashboard to `app`, reading through `service`."""
    register_attention(app, service)

    @app.callback(
        Output("tasks", "options"), Output("tasks", "value"),
        Input("dataset", "value"), State("tasks", "value"),
    )
    def tasks_for_dataset(dataset, chosen):
        try:
            listing = {d.get("name"): d for d in data.datasets(service)}
        except data.DataError:
            return [], chosen
        tasks = [t if isinstance(t, str) else t.get("name") for t in (listing.get(dataset) or {}).get("tasks", [])]
        options = [{"label": t, "value": t} for t in tasks]
        kept = [t for t in (chosen or []) if t in tasks] or tasks[:1]
        return options, kept

    @app.callback(
        Output("ko-layers", "max"), Output("ko-layers", "marks"), Output("ko-layers", "value"),
        Output("ko-edges", "options"), Output("model-info", "children"),
        Input("model", "value"),
    )
    def layer_window(model):
        try:
            entry = next((m for m in data.models(service) if m["name"] == model), {})
        except data.DataError:
            entry = {}
        num_layers = entry.get("num_layers") or DEFAULT_LAYERS
        return (num_layers - 1, layer_marks(num_layers), [0, num_layers - 1], edge_options(entry),
                model_summary(entry) if entry else "")

    form_states = (State("model", "value"), State("dataset", "value"), State("tasks", "value"),
                   State("n-questions", "value"), State("pooling", "value"), State("target", "value"),
                   State("measure", "value"), State("dim-vision", "value"), State("dim-language", "value"),
                   State("dim-target", "value"), State("bootstrap", "value"), State("ko-edges", "value"),
                   State("ko-layers", "value"), State("gaussianize", "value"))

    @app.callback(
        Output("analysis-id", "data"), Output("pending-id", "data"), Output("poll", "disabled"),
        Output("submit-status", "children"), Output("progress", "value"), Output("progress", "hidden"),
        Output("read-only", "data"), Output("tabs", "value"),
        Output("submit", "disabled"), Output("cancel", "hidden"), Output("form-error", "data"),
        Input("url", "search"), Input("submit", "n_clicks"), Input("poll", "n_intervals"),
        Input("cancel", "n_clicks"),
        State("pending-id", "data"), State("read-only", "data"), State("analysis-id", "data"),
        State("tabs", "value"), *form_states, State("token", "value"),
    )
    def control(search, _clicks, _ticks, _cancels, pending, read_only, current, tab, *form):
        """Open what the URL names, submit the form, follow the job, cancel it. While a job runs, Run is
        disabled and Cancel shown; a refused request's message goes next to its field (form-error)."""
        error = {"value": no_update}
        answer = _control(search, pending, read_only, current, tab, form, error)
        poll_disabled = answer[2]
        running = (no_update, no_update) if poll_disabled is no_update else (not poll_disabled, bool(poll_disabled))
        return (*answer, *running, error["value"])

    def _control(search, pending, read_only, current, tab, form, error):
        *fields, token = form
        trigger = ctx.triggered_id
        keep = no_update
        if trigger in (None, "url"):
            return _open_from_url(parse_location(search), current, pending, tab)
        if read_only:
            return keep, None, True, "This is a read-only shared view.", 0, True, keep, keep
        if trigger == "cancel":
            if not pending:
                return keep, None, True, keep, 0, True, keep, keep
            try:
                data.delete(service, pending, token)
            except data.DataError as exc:
                return keep, keep, keep, html.Span(f"Cannot cancel: {exc}", className="error"), keep, keep, keep, \
                    keep
            return keep, None, True, f"Cancelled analysis {pending}; its work stops within seconds.", 0, True, \
                keep, keep
        if trigger == "submit":
            try:
                request = build_request(*fields[:7], fields[7:10], *fields[10:])
                job = data.submit(service, request, token)
            except (ValueError, data.DataError) as exc:
                field = getattr(exc, "field", None) or form_field_of(str(exc))
                error["value"] = {"field": field, "message": plain_message(str(exc))}
                return keep, None, True, html.Span(f"Cannot start the analysis: {plain_message(str(exc))}",
                                                   className="error"), 0, True, keep, keep
            error["value"] = {}
            return _follow(job)
        if not pending:
            return keep, None, True, keep, 0, True, keep, keep
        try:
            job = data.status(service, pending)
        except data.DataError as exc:
            return keep, None, True, html.Span(f"Lost track of the analysis: {exc}", className="error"), 0, \
                True, keep, keep
        return _follow(job)

    @app.callback([Output(f"{name}-error", "children") for name in FORM_ERROR_IDS],
                  Input("form-error", "data"), Input("form-check", "data"), prevent_initial_call=True)
    def field_errors(refused, checked):
        """The message of a refused request (or of the live check) next to its field."""
        chosen = refused if ctx.triggered_id == "form-error" else checked
        where = FORM_FIELDS.get((chosen or {}).get("field"))
        return [chosen["message"] if name == where else None for name in FORM_ERROR_IDS]

    @app.callback(
        Output("estimate", "children"), Output("form-check", "data"),
        Input("model", "value"), Input("dataset", "value"), Input("tasks", "value"),
        Input("n-questions", "value"), Input("pooling", "value"), Input("target", "value"),
        Input("measure", "value"), Input("dim-vision", "value"), Input("dim-language", "value"),
        Input("dim-target", "value"), Input("bootstrap", "value"), Input("ko-edges", "value"),
        Input("ko-layers", "value"), Input("gaussianize", "value"), Input("tabs", "value"),
    )
    def estimate(*form):
        """Before running: expected time (from measured stage speeds) and bias, or why it cannot run."""
        *fields, tab = form
        if tab != "new":
            return no_update, no_update
        try:
            request = build_request(*fields[:7], fields[7:10], *fields[10:])
        except ValueError as exc:
            return None, {"field": form_field_of(str(exc)), "message": str(exc)}
        refused = data.precheck(service, request)
        if refused:
            field, message = refused
            return html.Span(f"This request cannot run: {plain_message(message)}", className="error"), \
                {"field": field, "message": plain_message(message)}
        cost = data.estimate(service, request)
        if not cost:
            return None, {}
        bias = cost["bias_bits"]
        parts = [html.B(f"Expected run time {costs.describe_seconds(cost['total_s'])}")]
        if cost["total_s"] is not None:
            parts.append(f" on this server's reference speed (running the model "
                         f"{costs.describe_seconds(cost['extract_s'])}, the decomposition "
                         f"{costs.describe_seconds(cost['analyze_s'])}; {cost['n_total']:,} questions x "
                         f"{cost['runs']} run{'s' if cost['runs'] > 1 else ''})")
        parts.append(f". Expected small-sample bias of the total: about {wording.fmt(bias, 2)} bits"
                     + (" — more questions or smaller PCA sizes lower it." if bias >= 0.25 else "."))
        return html.Span(parts, className="warn" if bias >= 0.25 else None), {}

    @app.callback(Output("ko-window", "children"), Input("ko-layers", "value"), Input("ko-layers", "max"))
    def window_text(window, top):
        if not window or top is None:
            return None
        return f"Decoder layers {window[0]}-{window[1]} (the model has 0-{top}); on the plots they are layers " \
               f"{window[0] + 1}-{window[1] + 1}, layer 0 being the embeddings."

    def _follow(job: dict, tab: str = "results", read_only=no_update, opened: bool = False):
        state = job.get("state")
        if state == "succeeded":
            text = "" if opened else "Cached result: shown at once." if job.get("cached") else "Analysis finished."
            return job["id"], None, True, text, 1, True, read_only, tab
        if state == "failed":
            reason = job.get("error") or "no reason given"
            return no_update, None, True, html.Span(f"The analysis failed: {reason}", className="error"), 0, \
                True, read_only, no_update
        return no_update, job["id"], False, _progress_text(job), float(job.get("progress") or 0.0), False, \
            read_only, no_update

    def _open_from_url(query: dict, current: str | None, pending: str | None, tab: str | None):
        """Open the view the URL names (an analysis, a share link, or the demo analysis when it names none);
        only the tab changes when the analysis is already open (our own URL updates, back/forward)."""
        keep = no_update
        if "share" in query:
            try:
                analysis_id = data.resolve_share(service, query["share"])
            except data.DataError as exc:
                return keep, None, True, html.Span(f"This share link does not work: {exc}", className="error"), \
                    0, True, True, "results"
            want = wanted_tab({**query, "tab": None if query.get("tab") == "new" else query.get("tab")})
            if analysis_id == current:
                return keep, keep, keep, keep, keep, keep, True, want if want != tab else keep
            return analysis_id, None, True, "", 0, True, True, want
        analysis_id = query.get("analysis")
        if not analysis_id:
            try:
                analysis_id = data.demo_analysis(service)
            except data.DataError:
                analysis_id = None
            if not analysis_id:  # nothing to show: the form, or the Studies or Analyses tab a deep link asks for
                return keep, None, True, "", 0, True, False, query["tab"] if query.get("tab") in ("studies", "analyses") else "new"
        want = wanted_tab(query)
        if analysis_id in (current, pending):
            return keep, keep, keep, keep, keep, keep, keep, want if want != tab else keep
        try:
            job = data.status(service, analysis_id)
        except data.DataError as exc:
            return keep, None, True, html.Span(f"Cannot open analysis: {exc}", className="error"), 0, True, \
                False, "new"
        return _follow(job, want, read_only=False, opened=True)

    @app.callback(
        Output("url-write", "search"),
        Input("analysis-id", "data"), Input("pending-id", "data"), Input("tabs", "value"),
        Input("question-pick", "value"), State("url", "search"), State("read-only", "data"),
    )
    def write_url(analysis_id, pending, tab, question, search, read_only):
        """Keep the address bar on the view shown (a job being followed counts as its analysis), so reload,
        back and share work; a pushed URL reaches the `url` location too, where `control` sees no change."""
        query = parse_location(search)
        if ctx.triggered_id is None and (query or not analysis_id):
            return no_update  # a deep link: the page is still opening what it names; "/": name what opened
        share = query.get("share") if read_only else None
        wanted = view_search(pending or analysis_id, tab, question, share, study=query.get("study"))
        if not wanted or wanted == (search or ""):
            return no_update
        return wanted

    @app.callback(
        Output("tab-new", "style"), Output("tab-analyses", "style"), Output("share-box", "hidden"),
        Output("read-only-banner", "hidden"), Input("read-only", "data"),
    )
    def read_only_view(read_only):
        hidden = {"display": "none"} if read_only else {}
        return hidden, hidden, bool(read_only), not read_only

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

    # Callbacks of the Compare and Questions tabs run when their tab is open (not on every page load), so
    # the first view only pays for the Results tab.
    @app.callback(Output("task-overlay", "figure"), Input("analysis-id", "data"), Input("task-term", "value"),
                  Input("tabs", "value"))
    def render_tasks(analysis_id, term, tab):
        if tab != "compare":
            return no_update
        if not analysis_id:
            return figures.message_figure("No analysis open yet.")
        try:
            return figures.task_overlay_figure(data.result(service, analysis_id), term)
        except data.DataError as exc:
            return figures.message_figure(f"Cannot compare tasks: {exc}")

    @app.callback(
        Output("comparison", "figure"), Output("correlations", "children"), Output("compare-message", "children"),
        Input("compare-button", "n_clicks"), Input("compare-id", "value"), Input("analysis-id", "data"),
        prevent_initial_call=True,
    )
    def render_comparison(_clicks, other, analysis_id):
        hint = figures.message_figure("Pick or paste another analysis to overlay it on this one.")
        other_id = analysis_ref(other)
        if not analysis_id or not other_id:
            return hint, None, None
        try:
            first = data.result(service, analysis_id)
            second = data.result(service, other_id)
        except data.DataError as exc:
            return hint, None, f"Cannot compare: {exc}"
        correlations = figures.layer_correlations(first, second)
        rows = [html.Tr([html.Th(figures.TERM_LABELS.get(term, "Total")),
                         html.Td("undefined" if r is None else f"{r:+.3f}")]) for term, r in correlations.items()]
        table = html.Div([html.H3("Layer-wise correlation (Pearson r across layers)"),
                          html.Table(className="metrics", children=[html.Tbody(rows)])])
        return figures.comparison_figure(first, second), table, None

    @app.callback(Output("compare-recent", "options"), Input("recent-analyses", "data"),
                  Input("analysis-id", "data"), Input("tabs", "value"), State("token", "value"))
    def compare_choices(recent, analysis_id, tab, token):
        """The analyses this browser opened that still exist, then the server's list (GET /analyses: in
        hosted mode those of the token in the form), finished ones only."""
        if tab != "compare":
            return no_update
        return recent_options(compare_candidates(service, recent, token), analysis_id)

    @app.callback(Output("compare-id", "value"), Input("compare-recent", "value"), prevent_initial_call=True)
    def pick_recent(analysis_id):
        return analysis_id or no_update

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

    @app.callback(
        Output("question-pick", "options"), Output("question-count", "children"), Output("question-pick", "value"),
        Input("analysis-id", "data"), Input("question-search", "value"), Input("question-task", "value"),
        Input("question-correct", "value"), Input("tabs", "value"), Input("url", "search"),
        State("question-pick", "value"),
    )
    def question_list(analysis_id, search, task, correctness, tab, location, picked):
        if tab != "questions":
            return no_update, no_update, no_update
        if not analysis_id:
            return [], "No analysis open yet.", None
        try:
            document = data.result(service, analysis_id)
        except data.DataError as exc:
            return [], f"Cannot list questions: {exc}", None
        matches = filter_questions(document.get("questions") or [], search, task, correctness)
        options = [{"label": f"{q.get('question')} — gold: {q.get('answer')} ({q.get('task')}, {q.get('qid')})",
                    "value": q.get("qid")} for q in matches[:500]]
        total = len(document.get("questions") or [])
        linked = parse_location(location).get("q")  # a deep link names the question
        shown = {option["value"] for option in options}
        value = linked if linked in shown else (picked if picked in shown else None)
        count = f"{len(matches)} of {total} questions match." if total else "This analysis has no questions."
        return options, count, value if value != picked else no_update

    @app.callback(
        Output("question-view", "children"), Output("question-figure", "figure"),
        Input("question-pick", "value"), State("analysis-id", "data"), prevent_initial_call=True,
    )
    def question_view(qid, analysis_id):
        if not qid or not analysis_id:
            return html.Div("Pick a question to see its image, answers and decomposition.", className="hint"), \
                figures.message_figure("No question picked.")
        try:
            view = data.question(service, analysis_id, qid)
        except data.DataError as exc:
            return html.Div(f"Cannot show this question: {exc}", className="error"), \
                figures.message_figure("No question to show.")
        return question_card(view), figures.question_figure(view)


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
        **{f"caption:{g}": caption for g in MAIN_GRAPHS},
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


def compare_candidates(service, recent: list | None, token: str | None, limit: int = 50) -> list[dict]:
    """[{id, label}] to compare with: this browser's recent analyses that still exist (deleted or expired
    ones dropped), then finished analyses from the server's list."""
    import time

    kept = []
    for entry in recent or []:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        try:
            data.status(service, entry["id"])
        except data.DataError:
            continue
        kept.append(entry)
    known = {entry["id"] for entry in kept}
    for item in data.analyses(service, token, limit):
        if item.get("state") == "succeeded" and item.get("id") not in known:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(item.get("created_at") or 0)))
            kept.append({"id": item["id"], "label": f"on the server, {created}"})
            known.add(item["id"])
    return kept


def initial_view(service, search: str | None) -> dict:
    """What the page can show at once, without a round trip: the finished analysis its URL names (or the
    demo analysis for a bare "/"), the tab and, for the Results tab, its rendering; {} for share links, running jobs and unknown ids (the
    `control` callback opens those)."""
    query = parse_location(search)
    if "share" in query:
        return {}
    try:
        analysis_id = query.get("analysis") or data.demo_analysis(service)
        if not analysis_id or data.status(service, analysis_id).get("state") != "succeeded":
            return {}
    except data.DataError:
        return {}
    view = {"analysis": analysis_id, "tab": wanted_tab(query)}
    if view["tab"] == "results":  # drawn from the layout itself: the first plot needs no callback
        try:
            view["results"] = rendered_results(service, analysis_id)[0]
        except data.DataError:
            pass
    return view


def register_attention(app, service) -> None:
    """The question explorer's attention maps and the own-question box."""

    @app.callback(
        Output("attention-baseline", "figure"), Output("attention-knockout", "figure"),
        Output("attention-knockout-block", "hidden"), Output("att-layer", "max"), Output("att-head", "options"),
        Output("att-message", "children"),
        Input("question-pick", "value"), Input("att-source", "value"), Input("att-layer", "value"),
        Input("att-head", "value"), State("analysis-id", "data"), prevent_initial_call=True,
    )
    def attention_view(qid, source, layer, head, analysis_id):
        if not qid or not analysis_id:
            empty = figures.message_figure("Pick a question to see where it looks in the image.")
            return empty, empty, True, no_update, no_update, None
        try:
            maps = data.attention(service, analysis_id, qid)
        except data.DataError as exc:
            empty = figures.message_figure("No attention map for this question.")
            return empty, empty, True, no_update, no_update, str(exc)
        base = maps["baseline"]
        top = len(base["layers"]) - 1
        layer = min(int(layer or 0), top)
        head_index = None if head in (None, "mean") else int(head)
        runs = [base] + ([maps["knockout"]] if maps.get("knockout") else [])
        z_max = max(max(map(max, figures.attention_grid(run, layer, source, head_index))) for run in runs) or None
        figs = [figures.attention_figure(run, layer, source, head_index, maps.get("image_url"), title=name, z_max=z_max)
                for run, name in zip(runs, ("Baseline", "Knockout"), strict=False)]
        knockout_fig = figs[1] if len(figs) > 1 else figures.message_figure("No knockout in this analysis.")
        options = [{"label": "mean over heads", "value": "mean"}] + [
            {"label": f"head {h}", "value": str(h)} for h in range(base["heads"])]
        answer = base.get("answer") or {}
        said = f"The model answers {answer['predicted']!r} (p = {answer['p']:.2f}) without a knockout." \
            if answer else None
        return figs[0], knockout_fig, len(figs) == 1, top, options, said

    @app.callback(
        Output("own-answer", "children"), Output("own-attention", "figure"),
        Input("own-ask", "n_clicks"), State("own-image", "contents"), State("own-text", "value"),
        State("att-source", "value"), State("att-layer", "value"), prevent_initial_call=True,
    )
    def own_question(_clicks, contents, text, source, layer):
        import base64

        if not contents:
            return html.Span("Drop an image first.", className="error"), no_update
        try:
            raw = base64.b64decode(contents.split(",", 1)[1])
            answer = data.ask(service, raw, text)
        except (IndexError, ValueError, data.DataError) as exc:
            return html.Span(f"Cannot ask: {exc}", className="error"), no_update
        maps = answer["baseline"]
        layer = min(int(layer or 0), len(maps["layers"]) - 1)
        said = maps.get("answer") or {}
        top = sorted((said.get("probabilities") or {}).items(), key=lambda kv: -kv[1])[:3]
        words = ", ".join(f"{a} {p:.2f}" for a, p in top)
        return [html.B(f"The demo model answers {said.get('predicted')!r}"), f" (most likely: {words})."], \
            figures.attention_figure(maps, layer, source, None, contents, title="Your image")

    @app.callback(
        Output("own-terms", "figure"), Output("own-terms-block", "hidden"), Output("own-terms-note", "children"),
        Input("own-ask", "n_clicks"), State("own-image", "contents"), State("own-text", "value"),
        State("analysis-id", "data"), prevent_initial_call=True,
    )
    def own_terms(_clicks, contents, text, analysis_id):
        """The same question placed among the open analysis's questions (demo-model analyses only)."""
        import base64

        hidden = figures.message_figure("No pointwise terms.")
        if not contents or not analysis_id:
            return hidden, True, None if contents else no_update
        try:
            document = data.result(service, analysis_id)
            if (document.get("request") or {}).get("model") != "demo":
                return hidden, True, "Open an analysis of the demo model to see your question's pointwise terms " \
                    "against its questions."
            terms = data.own_terms(service, analysis_id, base64.b64decode(contents.split(",", 1)[1]), text)
        except (IndexError, ValueError, data.DataError) as exc:
            return hidden, True, html.Span(f"No pointwise terms for your question: {exc}", className="error")
        return figures.own_terms_figure(terms, document), False, own_terms_note(terms, document)


def own_terms_note(terms: dict, document: dict) -> list:
    """What the own-question plot shows, in words: how the question was placed and what that cost."""
    shift = terms.get("refit_shift_bits")
    text = (f"Your question placed among the {terms.get('n_questions', '?')} questions of this analysis: the "
            "analysis's pipeline refitted with it as one more question (bootstrap off). Its pointwise terms "
            "(bits) are drawn over the range of the analysis's own questions.")
    if shift is not None:
        text += f" Refitting with one more question moved their terms by at most {wording.fmt(shift, 2)} bits."
    return [html.B(f"{figures.describe(document)}. "), text]


def filter_questions(questions: list[dict], search: str | None, task: str | None, correctness: str) -> list[dict]:
    """Questions whose text or gold answer holds `search` (case-insensitive), of `task`, and whose baseline
    answer is correct/incorrect as asked ("all" keeps both)."""
    needle = (search or "").strip().lower()
    kept = []
    for question in questions:
        text = f"{question.get('question', '')} {question.get('answer', '')} {question.get('qid', '')}".lower()
        if needle and needle not in text:
            continue
        if task and question.get("task") != task:
            continue
        correct = (question.get("baseline") or {}).get("correct")
        if correctness == "correct" and correct is not True or correctness == "incorrect" and correct is not False:
            continue
        kept.append(question)
    return kept


def question_card(view: dict) -> html.Div:
    def outcome(run: str):
        entry = view.get(run)
        if not entry or entry.get("predicted") is None:
            return None
        verdict = "correct" if entry.get("correct") else "incorrect"
        probability = entry.get("p_correct")
        p_text = f", p(gold) = {probability:.2f}" if isinstance(probability, int | float) else ""
        return html.Li([html.B(f"{run.capitalize()}: "), f"{entry['predicted']} ({verdict}{p_text})"],
                       className=verdict)

    answers = [item for item in (outcome("baseline"), outcome("knockout")) if item is not None]
    return html.Div(className="question-card", children=[
        html.Img(src=view.get("image_url"), alt=f"image {view.get('image_id')}", id="question-image")
        if view.get("image_url") else html.Div("(no image: the features file has none)", className="hint"),
        html.Div([
            html.P(view.get("question") or "(no question text in the features file)", className="question-text"),
            html.P([html.B("Gold answer: "), str(view.get("answer") or "(not given)")]),
            html.Ul(answers, className="answers"),
            html.P(f"{view.get('task')} · {view.get('qid')}", className="hint"),
        ]),
    ])
