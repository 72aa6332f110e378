"""The Compare tab: the open analysis's tasks overlaid, and another analysis (this browser's recent ones or
the server's list, or a pasted id or link) overlaid on it with layer-wise correlations."""

from __future__ import annotations

from urllib.parse import urlsplit

from dash import Input, Output, State, html, no_update

from app.ui import data, figures
from app.ui.page_callbacks import parse_location


def analysis_ref(text: str | None) -> str:
    """The analysis id in what a user pasted: an id, or a dashboard link with `?analysis=<id>`."""
    text = (text or "").strip()
    if "?" in text:
        return parse_location(urlsplit(text).query).get("analysis", text)
    return text


def recent_options(recent: list | None, current: str | None) -> list[dict]:
    """Dropdown options for the analyses this browser opened, the one shown excluded."""
    return [{"label": f"{entry.get('label', '')} · {entry['id'][:12]}", "value": entry["id"]}
            for entry in recent or [] if isinstance(entry, dict) and entry.get("id") and entry["id"] != current]


def register(app, service) -> None:
    """The Compare tab's callbacks (they run when the tab is open, not on every page load)."""
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
