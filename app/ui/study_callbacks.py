"""The Studies tab: open a study by id or link (its state, each part's progress, links to its page and
exports), and the list of the server's studies (open servers). Deep link: /?tab=studies&study=<id>."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from dash import Input, Output, State, ctx, html, no_update

from app.ui import data

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
    return html.Div([
        html.P([html.B(f"Study {info['id']}"), f": {info['state']}, {100 * info['progress']:.0f}%"],
               className="study-state"),
        *error, parts,
        html.P(_separated([html.A(label, href=url, className="study-link") for label, url in links.items()]),
               className="study-links"),
    ])


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


def register(app, service) -> None:
    @app.callback(Output("study-list", "children"), Input("tabs", "value"), Input("study-refresh", "n_clicks"))
    def listing(tab, _clicks):
        if tab != "studies" or data.hosted(service):
            return no_update
        try:
            return study_rows(data.studies(service))
        except data.DataError as exc:
            return html.Span(f"Cannot list the studies: {exc}", className="error")

    @app.callback(Output("study-view", "children"), Output("study-id", "value"),
                  Input("study-open", "n_clicks"), Input("study-id", "n_submit"), Input("url", "search"),
                  State("study-id", "value"))
    def open_study(_clicks, _submitted, search, text):
        if ctx.triggered_id in (None, "url"):  # a deep link: ?study=<id>
            text = study_ref(search) if "study=" in (search or "") else None
            if not text:
                return no_update, no_update
        study_id = study_ref(text)
        if not study_id:
            return html.Span("Enter a study id or its page link.", className="error"), no_update
        try:
            info = data.study_status(service, study_id)
        except data.DataError as exc:
            return html.Span(f"Cannot open study {study_id}: {exc}", className="error"), no_update
        return study_view(info), study_id
