"""The page around the tabs: the view in the URL (analysis or share link, tab, question) and back, opening
what it names, submitting the form, following the job until it ends or is cancelled, the read-only view of
a share link, and what the first view shows without a round trip."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from dash import Input, Output, State, ctx, html, no_update

from app.ui import data
from app.ui.new_analysis_callbacks import build_request, form_field_of, plain_message
from app.ui.results_callbacks import rendered_results
from pidcore.pipeline import costs

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
    # the worker's progress is weighted by the stages' measured costs (worker.tasks._extract_end), so the
    # pace so far gives the time left across stages (pidcore.pipeline.costs.eta_seconds)
    left = costs.eta_seconds(progress, elapsed) if job.get("state") == "running" else None
    if left is not None and progress < 1:
        text += f", {costs.describe_seconds(left)} left"
    if job.get("message"):
        text += f" — {job['message']}"
    return text


def register(app, service) -> None:
    """The page's callbacks."""
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
