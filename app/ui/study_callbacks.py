"""The Studies tab: start a study from the form (through the service call POST /api/v1/studies makes, so
the same validation; a refusal's messages go next to their fields), open one by id or link (its state,
each part's progress, followed until it ends; links to its page and exports), and the list of the server's
studies (open servers). Deep link: /?tab=studies&study=<id>."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from dash import Input, Output, State, ctx, html, no_update

from app.ui import data
from app.ui.layout import RECIPE_CHOICES, STUDY_FORM_FIELDS, task_choices

ACTIVE_STATES = ("queued", "running")
_STUDY_IN_LINK = re.compile(r"(?:/study/|/api/v1/studies/|[?&]study=)([A-Za-z0-9]+)")


def study_ref(text: str | None) -> str:
    """The study id in what a user pasted: an id, its page link (/study/<id>), an API URL or ?study=<id>."""
    text = (text or "").strip()
    found = _STUDY_IN_LINK.search(text)
    return found.group(1) if found else text


def study_links(study_id: str) -> dict[str, str]:
    base = f"/api/v1/studies/{study_id}/report"
    return {"Open the study page": f"/study/{study_id}", "Report JSON": f"{base}?format=json",
            "CSV": f"{base}?format=csv", "HTML": f"{base}?format=html"}


def study_view(info: dict) -> html.Div:
    """State, overall and per-part progress, and (once finished) the page and export links."""
    links = study_links(info["id"])
    if info["state"] != "succeeded":  # the page shows the progress until the report is there
        links = {"Open the study page": links["Open the study page"]}
    parts = html.Table(className="study-parts", children=[
        html.Thead(html.Tr([html.Th("model"), html.Th("task"), html.Th("progress"), html.Th("step")])),
        html.Tbody([html.Tr([html.Td(p["model"]), html.Td(p["task"]), html.Td(f"{100 * p['progress']:.0f}%"),
                             html.Td(p.get("message") or "")]) for p in info["parts"]])])
    error = [html.P(info["error"], className="error")] if info.get("error") else []
    left = study_time_left(info)
    return html.Div([
        html.P([html.B(f"Study {info['id']}"), f": {info['state']}, {100 * info['progress']:.0f}%"]
               + ([f", {left} left (at the pace so far; progress weighted by each stage's measured cost)"]
                  if left else []), className="study-state"),
        *error, parts,
        html.P(_separated([html.A(label, href=url, className="study-link") for label, url in links.items()]),
               className="study-links"),
    ])


def study_time_left(info: dict, now: float | None = None) -> str:
    """'about 3 min' left of a running study, from its cost-weighted progress and the time since it was
    created (pidcore.study.progress.eta_seconds); '' when not running or too early to tell."""
    import time

    from pidcore.pipeline.costs import describe_seconds
    from pidcore.study.progress import eta_seconds

    if info.get("state") != "running" or not info.get("created_at"):
        return ""
    left = eta_seconds(float(info.get("progress") or 0.0), (now or time.time()) - float(info["created_at"]))
    return describe_seconds(left) if left is not None else ""


def _separated(items: list) -> list:
    """The items with " · " between them."""
    return [part for index, item in enumerate(items) for part in ([" · "] if index else []) + [item]]


def study_rows(rows: list[dict]) -> html.Div | str:
    if not rows:
        return "No studies on this server yet."
    body = []
    for row in rows:
        started = datetime.fromtimestamp(row["created_at"], tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        body.append(html.Tr([html.Td(html.A(row["id"][:12] + "…", href=f"/study/{row['id']}")),
                             html.Td(", ".join(row.get("models") or [])), html.Td(", ".join(row.get("tasks") or [])),
                             html.Td(f"{row['state']} {100 * row['progress']:.0f}%"), html.Td(started)]))
    return html.Table(className="study-table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("study", "models", "tasks", "state", "started")])),
        html.Tbody(body)])


# -- the form ------------------------------------------------------------------------------------------

class FormProblem(ValueError):
    """A value the form itself cannot read (the fixed windows' text); `field` is the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


_WINDOW = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_windows(text: str | None, edges: list[str] | None) -> list[dict]:
    """Fixed knockout windows from "0-4, 10-14" (decoder layers, inclusive; "7" is 7-7), each cutting
    `edges`: [{"edges", "layers": [first, last]}]. The service checks the values; only the text is read here."""
    windows = []
    for piece in (text or "").replace(";", ",").split(","):
        if not piece.strip():
            continue
        found = _WINDOW.match(piece)
        if not found:
            raise FormProblem("runs", f"fixed windows: cannot read {piece.strip()!r}; write first-last decoder "
                                      f"layers, e.g. 0-4, 10-14")
        first = int(found.group(1))
        windows.append({"edges": list(edges or []), "layers": [first, int(found.group(2) or first)]})
    return windows


def build_study_request(models, dataset, tasks, dataset_tasks, seed_cut, sweep, k, edges, windows, recipes,
                        n_questions, dims, gaussianize, bootstrap) -> dict:
    """The POST /api/v1/studies body the form describes. "all" in `tasks` is every task of the dataset
    (`dataset_tasks`); values pass as they are: the service validates them (pidcore.study.run.StudyRequest)."""
    chosen = list(tasks or [])
    if "all" in chosen:
        chosen = list(dataset_tasks or [])
    return {"models": list(models or []), "dataset": dataset, "tasks": chosen,
            "seed_cut": bool(seed_cut), "sweep": {"edges": list(edges or []), "k": k} if sweep else None,
            "knockouts": parse_windows(windows, edges), "recipes": list(RECIPE_CHOICES.get(recipes, [recipes])),
            "n_questions": n_questions, "dims": list(dims), "gaussianize": gaussianize, "bootstrap": bootstrap}


#: The request field a problem starts with -> the form field it is shown next to.
REQUEST_FIELDS = {"models": "models", "dataset": "dataset", "unknown dataset": "dataset", "tasks": "tasks",
                  "unknown task": "tasks", "question_ids": "tasks", "recipes": "recipes", "knockouts": "runs",
                  "sweep": "runs", "seed_cut": "runs", "n_questions": "n-questions", "dims": "dims",
                  "gaussianize": "gaussianize", "bootstrap": "bootstrap"}
_LEADING = re.compile(r"^(unknown (?:task|dataset)|[a-z_]+)")


def refusal(exc: Exception) -> list[dict]:
    """A refused start as [{field, message}, ...]: each problem of the service's message next to its form
    field (field None: shown in the status line only)."""
    from app.ui.callbacks import plain_message

    if isinstance(exc, FormProblem):
        return [{"field": exc.field, "message": str(exc)}]
    problems: list[dict] = []
    for chunk in str(exc).removeprefix("invalid study request: ").split("; "):
        leading = _LEADING.match(chunk)
        field = REQUEST_FIELDS.get(leading.group(1)) if leading else None
        if field is None and chunk.startswith("valid ") and problems:  # "...; valid tasks: a, b"
            problems[-1]["message"] += "; " + chunk
            continue
        problems.append({"field": field, "message": plain_message(chunk)})
    return problems


def field_messages(problems: list[dict] | None) -> list[str | None]:
    """The text next to each of STUDY_FORM_FIELDS (None where nothing was refused)."""
    texts = {}
    for problem in problems or []:
        if problem.get("field") in STUDY_FORM_FIELDS:
            texts.setdefault(problem["field"], []).append(problem["message"])
    return ["; ".join(texts[name]) if name in texts else None for name in STUDY_FORM_FIELDS]


def deep_link(study_id: str, analysis_id: str | None = None) -> str:
    """The page's query with the study open (the analysis the page follows kept, so nothing else changes)."""
    from urllib.parse import urlencode

    return "?" + urlencode({**({"analysis": analysis_id} if analysis_id else {}), "tab": "studies",
                            "study": study_id})


def cancel(service, study_id: str | None, token: str | None = None) -> str:
    """Cancel the open study through the service call DELETE /api/v1/studies/{id} makes (hosted: with the
    token that started it; counted as a write); what happened, in words (DataError when refused)."""
    study_id = study_ref(study_id)
    if not study_id:
        raise data.DataError("open a study first")
    before = data.study_status(service, study_id)
    if before["state"] not in ACTIVE_STATES:
        return f"Study {study_id} is {before['state']}: nothing to cancel."
    info = data._guard(service.cancel_study, study_id, token=data.writer(service, token))
    done = sum(1 for part in info.get("parts") or [] if part.get("progress") == 1.0)
    return (f"Study {study_id} cancelled: its queued and running parts stop within seconds; {done} of "
            f"{len(info.get('parts') or [])} parts had finished and are kept (start it again to resume).")


def register(app, service) -> None:
    @app.callback(Output("study-list", "children"), Input("tabs", "value"), Input("study-refresh", "n_clicks"),
                  Input("study-started", "data"), Input("study-poll", "disabled"))
    def listing(tab, _clicks, _started, _followed_ended):
        """The server's studies (again when the form starts one and when the study followed ends)."""
        if tab != "studies" or data.hosted(service):
            return no_update
        try:
            return study_rows(data.studies(service))
        except data.DataError as exc:
            return html.Span(f"Cannot list the studies: {exc}", className="error")

    @app.callback(Output("study-tasks", "options"), Output("study-tasks", "value"), Input("study-dataset", "value"),
                  State("study-tasks", "value"), prevent_initial_call=True)
    def tasks_for_dataset(dataset, chosen):
        try:
            found = next((d for d in data.datasets(service) if d.get("name") == dataset), None)
        except data.DataError:
            found = None
        options = task_choices(found)
        valid = {option["value"] for option in options}
        return options, [task for task in chosen or [] if task in valid] or ["all"]

    @app.callback(Output("study-form-error", "data"), Output("study-start-status", "children"),
                  Output("study-started", "data"), Output("url-write", "search", allow_duplicate=True),
                  Input("study-submit", "n_clicks"),
                  State("study-models", "value"), State("study-dataset", "value"), State("study-tasks", "value"),
                  State("study-tasks", "options"), State("study-seed-cut", "value"), State("study-sweep", "value"),
                  State("study-sweep-k", "value"), State("study-edges", "value"), State("study-windows", "value"),
                  State("study-recipes", "value"), State("study-n-questions", "value"),
                  State("study-dim-vision", "value"), State("study-dim-language", "value"),
                  State("study-dim-target", "value"), State("study-gaussianize", "value"),
                  State("study-bootstrap", "value"), State("study-token", "value"),
                  State("analysis-id", "data"), State("pending-id", "data"), prevent_initial_call=True)
    def start_study(_clicks, models, dataset, tasks, task_options, seed_cut, sweep, k, edges, windows, recipes,
                    n_questions, dim_v, dim_l, dim_y, gaussianize, bootstrap, token, analysis_id, pending):
        """Start the study the form describes; on success open its view and put it in the address."""
        dataset_tasks = [o["value"] for o in task_options or [] if o["value"] != "all"]
        try:
            request = build_study_request(models, dataset, tasks, dataset_tasks, seed_cut, sweep, k, edges, windows,
                                          recipes, n_questions, [dim_v, dim_l, dim_y], gaussianize, bootstrap)
            info = data.submit_study(service, request, token)
        except (ValueError, data.DataError) as exc:
            problems = refusal(exc)
            text = "; ".join(p["message"] for p in problems)
            return problems, html.Span(f"Cannot start the study: {text}", className="error"), no_update, no_update
        parts = len(info.get("parts") or [])
        said = "already finished: shown at once" if info["state"] == "succeeded" else "started"
        return [], f"Study {info['id']} {said} ({parts} part{'s' if parts != 1 else ''}).", info["id"], \
            deep_link(info["id"], pending or analysis_id)

    @app.callback([Output(f"study-{name}-error", "children") for name in STUDY_FORM_FIELDS],
                  Input("study-form-error", "data"), prevent_initial_call=True)
    def field_errors(problems):
        return field_messages(problems)

    @app.callback(Output("study-view", "children"), Output("study-id", "value"), Output("study-poll", "disabled"),
                  Output("study-cancel", "hidden"),
                  Input("study-open", "n_clicks"), Input("study-id", "n_submit"), Input("url", "search"),
                  Input("study-started", "data"), Input("study-poll", "n_intervals"), State("study-id", "value"),
                  State("read-only", "data"))
    def open_study(_clicks, _submitted, search, started, _ticks, text, read_only):
        """Show a study (opened, started, or named by the deep link ?study=<id>); follow it while it runs
        (with a Cancel button, except in a read-only shared view)."""
        trigger = ctx.triggered_id
        if trigger in (None, "url"):  # a deep link: ?study=<id>
            text = study_ref(search) if "study=" in (search or "") else None
            if not text:
                return no_update, no_update, no_update, no_update
        elif trigger == "study-started":
            text = started
        study_id = study_ref(text)
        if not study_id:
            return html.Span("Enter a study id or its page link.", className="error"), no_update, True, True
        try:
            info = data.study_status(service, study_id)
        except data.DataError as exc:
            return html.Span(f"Cannot open study {study_id}: {exc}", className="error"), no_update, True, True
        active = info["state"] in ACTIVE_STATES
        return study_view(info), study_id, not active, not active or bool(read_only)

    @app.callback(Output("study-cancel-status", "children"), Output("study-started", "data", allow_duplicate=True),
                  Input("study-cancel", "n_clicks"), State("study-id", "value"), State("study-token", "value"),
                  prevent_initial_call=True)
    def cancel_study(clicks, study_id, token):
        """Cancel the open study, then show its state again (the view follows the study-started store)."""
        if not clicks:
            return no_update, no_update
        try:
            return cancel(service, study_id, token), study_ref(study_id)
        except data.DataError as exc:
            return html.Span(f"Cannot cancel: {exc}", className="error"), no_update

    @app.callback(Output("study-form-box", "style"), Input("read-only", "data"))
    def read_only_form(read_only):
        """A read-only shared view shows studies (open one, its page) but no form to start one."""
        return {"display": "none"} if read_only else {}
