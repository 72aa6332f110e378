"""Callbacks of the Analyses tab: the server's list (searched, paged), Delete with a confirm dialog.
Re-open is a plain link to the analysis's deep-link URL, which `page_callbacks.control` opens."""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, html, no_update

from app.ui import data
from app.ui.layout import ANALYSES_PAGE, analyses_table


def page_range(offset: int, shown: int, total: int) -> str:
    """"11-20 of 34 analyses" ("" when there are none)."""
    if not total:
        return ""
    return f"{offset + 1}-{offset + shown} of {total} analys{'es' if total != 1 else 'is'}"


def next_offset(trigger: str | None, offset: int, total: int, page: int = ANALYSES_PAGE) -> int:
    """The first row shown after Previous/Next (a new search starts again at 0)."""
    if trigger == "analyses-next" and offset + page < total:
        return offset + page
    if trigger == "analyses-prev":
        return max(0, offset - page)
    return 0 if trigger == "analyses-search" else offset


def register(app, service) -> None:

    @app.callback(Output("analyses-offset", "data"),
                  Input("analyses-prev", "n_clicks"), Input("analyses-next", "n_clicks"),
                  Input("analyses-search", "value"), State("analyses-offset", "data"),
                  State("analyses-total", "data"), prevent_initial_call=True)
    def pager(_prev, _next, _search, offset, total):
        return next_offset(ctx.triggered_id, int(offset or 0), int(total or 0))

    @app.callback(
        Output("analyses-table", "children"), Output("analyses-range", "children"),
        Output("analyses-prev", "disabled"), Output("analyses-next", "disabled"), Output("analyses-total", "data"),
        Input("tabs", "value"), Input("analyses-offset", "data"), Input("analyses-search", "value"),
        Input("analyses-refresh", "n_clicks"), Input("analyses-changed", "data"), State("token", "value"),
        State("analysis-id", "data"),
    )
    def listing(tab, offset, search, _refresh, _changed, token, open_id):
        """The table, read only while the tab is open (the first view never pays for it)."""
        if tab != "analyses":
            return no_update, no_update, no_update, no_update, no_update
        offset = int(offset or 0)
        try:
            page = data.analyses_page(service, token, offset, ANALYSES_PAGE, search)
        except data.DataError as exc:
            return html.Div(f"Cannot list analyses: {exc}", className="error"), "", True, True, 0
        if not page["items"] and offset and page["total"]:  # the last page emptied by a delete
            offset = max(0, (page["total"] - 1) // ANALYSES_PAGE * ANALYSES_PAGE)
            page = data.analyses_page(service, token, offset, ANALYSES_PAGE, search)
        items, total = page["items"], page["total"]
        empty = "No analysis matches this search." if search else "No analyses on this server yet."
        try:
            demo_id = data.demo_analysis(service)
        except data.DataError:
            demo_id = None
        table = analyses_table(items, open_id, demo_id) if items else html.Div(empty, className="hint")
        return table, page_range(offset, len(items), total), offset == 0, offset + len(items) >= total, total

    @app.callback(
        Output("analyses-confirm", "displayed"), Output("analyses-confirm", "message"),
        Output("analyses-delete-target", "data"),
        Input({"type": "analysis-delete", "index": ALL}, "n_clicks"), prevent_initial_call=True,
    )
    def ask_delete(clicks):
        """Delete asks first (new rows fire this callback with no click: ignored)."""
        if not ctx.triggered_id or not any(clicks or []) or not (ctx.triggered and ctx.triggered[0].get("value")):
            return no_update, no_update, no_update
        analysis_id = ctx.triggered_id["index"]
        return True, f"Delete analysis {analysis_id} and its result and share links? This cannot be undone.", \
            analysis_id

    @app.callback(
        Output("analyses-message", "children"), Output("analyses-changed", "data"),
        Output("analysis-id", "data", allow_duplicate=True),
        Input("analyses-confirm", "submit_n_clicks"), State("analyses-delete-target", "data"),
        State("token", "value"), State("analyses-changed", "data"), State("analysis-id", "data"),
        prevent_initial_call=True,
    )
    def confirmed_delete(_submitted, analysis_id, token, changed, current):
        """Delete (hosted: only the token that submitted it may); the open analysis closes when it was it."""
        if not analysis_id:
            return no_update, no_update, no_update
        try:
            data.delete(service, analysis_id, token)
        except data.DataError as exc:
            return html.Span(f"Cannot delete analysis {analysis_id}: {exc}", className="error"), no_update, no_update
        return f"Deleted analysis {analysis_id}.", int(changed or 0) + 1, None if current == analysis_id else no_update
