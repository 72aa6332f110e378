"""Dash callbacks: wire the layout to `data` (the service) and `figures` (the plots)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from dash import Input, Output, State, ctx, dcc, html, no_update

from app.ui import data, figures
from app.ui.layout import DEFAULT_LAYERS, edge_options, graph_config, layer_marks, model_summary

RECENT_KEPT = 20  # analyses remembered per browser for the Compare tab
GRAPH_IDS = ("stacked-baseline", "stacked-knockout", "difference", "task-overlay", "comparison", "question-figure")
ACTIVE_STATES = ("queued", "running")


TABS = ("new", "results", "compare", "questions")
VIEW_KEYS = ("share", "analysis", "tab", "q")  # what a view's URL holds, in this order


def parse_location(search: str | None) -> dict:
    """The view in the URL query: `analysis=<id>` or `share=<token>`, `tab`, `q` (a question id)."""
    query = parse_qs((search or "").lstrip("?"))
    return {key: values[0] for key, values in query.items() if values and values[0]}


def view_search(analysis_id: str | None, tab: str | None, question: str | None, share: str | None = None) -> str:
    """The URL query of a view (`?analysis=..&tab=..&q=..`; a shared view keeps `share=` instead of the id);
    "" when no analysis is open. The inverse of `parse_location`."""
    if not (analysis_id or share):
        return ""
    parts = {"share": share} if share else {"analysis": analysis_id}
    if tab in TABS:
        parts["tab"] = tab
    if question and tab == "questions":
        parts["q"] = question
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


def _progress_text(job: dict) -> str:
    stage = job.get("stage") or job.get("state")
    percent = int(round(100 * float(job.get("progress") or 0.0)))
    message = f" — {job['message']}" if job.get("message") else ""
    return f"Analysis {job['id']} is {job['state']}: {stage} ({percent} %){message}"


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:+.3f}" if isinstance(value, float) else str(value)


def _humanize(key: str) -> str:
    return key.replace("_", " ")


def effects_table(document: dict) -> html.Div:
    """Knockout effect metrics (pidcore.effects output) plus answer probability and accuracy change."""
    effects = document.get("effects")
    runs = document.get("runs") or {}
    baseline, knockout = runs.get("baseline") or {}, runs.get("knockout") or {}
    if not knockout:
        return html.Div("No knockout in this analysis, so no knockout effects.", className="hint")
    flat = _flatten(effects) if isinstance(effects, dict) else []
    headline = [(name, value) for name, value in flat if not isinstance(value, str)]
    rows = headline + [(name, value) for name, value in flat if isinstance(value, str)]  # layer lists last
    named = {name for name, _ in flat}
    for key in ("accuracy", "mean_p_correct"):
        name = f"{_humanize(key)} change"
        if name not in named and isinstance(baseline.get(key), int | float) and isinstance(knockout.get(key),
                                                                                         int | float):
            rows.insert(len(headline), (name, knockout[key] - baseline[key]))
    if not rows:
        return html.Div("This analysis reports no knockout effect metrics.", className="hint")
    return html.Div([
        html.H3("Knockout effects"),
        html.Table(className="metrics", children=[html.Tbody([
            html.Tr([html.Th(name), html.Td(_number(value))]) for name, value in rows])]),
        html.Div("Information quantities in bits; probability and accuracy changes are knockout - baseline.",
                 className="hint"),
    ])


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in mapping.items():
        name = f"{prefix}{_humanize(str(key))}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + " · "))
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
    return [html.Span(" · ".join(parts)), " · ",
            html.A(f"analysis {analysis_id}", href=f"?analysis={analysis_id}", id="analysis-link")]


def layer_notes(document: dict) -> list | None:
    """What the pipeline had to do, per run and layer (components capped at the data's rank, degenerate
    latents regularised), as a short list for the result page; None when there is nothing to say."""
    notes = {}  # the messages name their layer; one naming none is repeated on every layer: say it once
    for run_name, run in (document.get("runs") or {}).items():
        for layer in (run or {}).get("layers") or []:
            notes.update(dict.fromkeys(f"{run_name}: {text}" for text in layer.get("warnings") or []))
    if not notes:
        return None
    return [html.Span("Notes from the estimator: "), html.Ul([html.Li(note) for note in notes])]


def register(app, service) -> None:
    """Attach every callback of the dashboard to `app`, reading through `service`."""

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

    @app.callback(
        Output("analysis-id", "data"), Output("pending-id", "data"), Output("poll", "disabled"),
        Output("submit-status", "children"), Output("progress", "value"), Output("progress", "hidden"),
        Output("read-only", "data"), Output("tabs", "value"),
        Input("url", "search"), Input("submit", "n_clicks"), Input("poll", "n_intervals"),
        State("pending-id", "data"), State("read-only", "data"), State("analysis-id", "data"),
        State("tabs", "value"),
        State("model", "value"), State("dataset", "value"), State("tasks", "value"),
        State("n-questions", "value"), State("pooling", "value"), State("target", "value"),
        State("measure", "value"), State("dim-vision", "value"), State("dim-language", "value"),
        State("dim-target", "value"), State("bootstrap", "value"), State("ko-edges", "value"),
        State("ko-layers", "value"), State("gaussianize", "value"), State("token", "value"),
    )
    def control(search, _clicks, _ticks, pending, read_only, current, tab, model, dataset, tasks, n_questions,
                pooling, target, measure, dim_v, dim_l, dim_t, bootstrap, edges, window, gaussianize, token):
        trigger = ctx.triggered_id
        keep = no_update
        if trigger in (None, "url"):
            return _open_from_url(parse_location(search), current, pending, tab)
        if read_only:
            return keep, None, True, "This is a read-only shared view.", 0, True, keep, keep
        if trigger == "submit":
            try:
                request = build_request(model, dataset, tasks, n_questions, pooling, target, measure,
                                        [dim_v, dim_l, dim_t], bootstrap, edges, window, gaussianize)
                job = data.submit(service, request, token)
            except (ValueError, data.DataError) as exc:
                return keep, None, True, html.Span(f"Cannot start the analysis: {exc}", className="error"), 0, \
                    True, keep, keep
            return _follow(job)
        if not pending:
            return keep, None, True, keep, 0, True, keep, keep
        try:
            job = data.status(service, pending)
        except data.DataError as exc:
            return keep, None, True, html.Span(f"Lost track of the analysis: {exc}", className="error"), 0, \
                True, keep, keep
        return _follow(job)

    def _follow(job: dict, tab: str = "results", read_only=no_update):
        state = job.get("state")
        if state == "succeeded":
            text = "Cached result: shown at once." if job.get("cached") else "Analysis finished."
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
            if not analysis_id:
                return keep, None, True, "", 0, True, False, "new"
        want = wanted_tab(query)
        if analysis_id in (current, pending):
            return keep, keep, keep, keep, keep, keep, keep, want if want != tab else keep
        try:
            job = data.status(service, analysis_id)
        except data.DataError as exc:
            return keep, None, True, html.Span(f"Cannot open analysis: {exc}", className="error"), 0, True, \
                False, "new"
        return _follow(job, want, read_only=False)

    @app.callback(
        Output("url-write", "search"),
        Input("analysis-id", "data"), Input("pending-id", "data"), Input("tabs", "value"),
        Input("question-pick", "value"), State("url", "search"), State("read-only", "data"),
    )
    def write_url(analysis_id, pending, tab, question, search, read_only):
        """Keep the address bar on the view shown (a job being followed counts as its analysis), so reload,
        back and share work; a pushed URL reaches the `url` location too, where `control` sees no change."""
        if ctx.triggered_id is None:
            return no_update
        query = parse_location(search)
        share = query.get("share") if read_only else None
        wanted = view_search(pending or analysis_id, tab, question, share)
        if not wanted or wanted == (search or ""):
            return no_update
        return wanted

    @app.callback(
        Output("tab-new", "style"), Output("share-box", "hidden"), Output("read-only-banner", "hidden"),
        Input("read-only", "data"),
    )
    def read_only_view(read_only):
        return ({"display": "none"} if read_only else {}), bool(read_only), not read_only

    @app.callback(
        Output("stacked-baseline", "figure"), Output("stacked-knockout", "figure"), Output("difference", "figure"),
        Output("effects", "children"), Output("result-summary", "children"), Output("result-message", "children"),
        Output("question-task", "options"), Output("recent-analyses", "data"),
        Input("analysis-id", "data"), Input("mode", "value"), State("recent-analyses", "data"),
    )
    def render_results(analysis_id, mode, recent):
        empty = figures.message_figure("No analysis open yet.")
        if not analysis_id:
            return empty, empty, empty, None, None, \
                "No analysis open: start one under New analysis, or open a link with ?analysis=<id>.", [], no_update
        try:
            document = data.result(service, analysis_id)
        except data.DataError as exc:
            failed = figures.message_figure("No result to show.")
            return failed, failed, failed, None, None, f"Cannot show analysis {analysis_id}: {exc}", [], no_update
        tasks = sorted({q.get("task") for q in document.get("questions") or [] if q.get("task")})
        y_max = figures.shared_y_max(document)
        return (figures.stacked_figure(document, "baseline", mode, y_max=y_max),
                figures.stacked_figure(document, "knockout", mode, title="Knockout: decomposition per layer",
                                       y_max=y_max),
                figures.difference_figure(document), effects_table(document), _summary(document, analysis_id),
                layer_notes(document), [{"label": t, "value": t} for t in tasks],
                remember(recent, analysis_id, f"{figures.describe(document)} · {document.get('n_questions', '?')} q"))

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
                  Input("analysis-id", "data"), Input("tabs", "value"))
    def compare_choices(recent, analysis_id, tab):
        return recent_options(recent, analysis_id) if tab == "compare" else no_update

    @app.callback(Output("compare-id", "value"), Input("compare-recent", "value"), prevent_initial_call=True)
    def pick_recent(analysis_id):
        return analysis_id or no_update

    @app.callback(
        [Output(g, "config") for g in GRAPH_IDS], [Output(g, "figure", allow_duplicate=True) for g in GRAPH_IDS],
        Input("plot-format", "value"), [State(g, "figure") for g in GRAPH_IDS], prevent_initial_call=True,
    )
    def plot_format(fmt, *current):
        # dcc.Graph re-plots (and so applies a new config) only when its figure changes: send them back
        return [graph_config(fmt, g) for g in GRAPH_IDS] + [fig if fig else no_update for fig in current]

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
        Input("question-pick", "value"), State("analysis-id", "data"),
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
        html.Img(src=view.get("image_url"), alt=f"image {view.get('image_id')}", id="question-image"),
        html.Div([
            html.P(view.get("question"), className="question-text"),
            html.P([html.B("Gold answer: "), str(view.get("answer"))]),
            html.Ul(answers, className="answers"),
            html.P(f"{view.get('task')} · {view.get('qid')}", className="hint"),
        ]),
    ])
