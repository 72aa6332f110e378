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


def _run(document: dict, run: str = "baseline") -> list[dict]:
    return ((document.get("runs") or {}).get(run) or {}).get("layers") or []


def run_options(document: dict | None) -> list[dict]:
    """The run choices for one analysis: knockout disabled where it has none."""
    has_knockout = bool(document and _run(document, "knockout"))
    return [{"label": " baseline", "value": "baseline"},
            {"label": " knockout" if has_knockout else " knockout (none in this analysis)", "value": "knockout",
             "disabled": not has_knockout}]


def chosen_runs(first: dict, second: dict, run: str | None, other_run: str | None) -> tuple[str, str, str | None]:
    """(run of the first, run of the second, note): a knockout asked of an analysis without one falls back to
    its baseline, and the note says so."""
    notes, runs = [], []
    for document, which, name in ((first, run, "this analysis"), (second, other_run, "the other analysis")):
        which = which if which in ("baseline", "knockout") else "baseline"
        if which == "knockout" and not _run(document, "knockout"):
            notes.append(f"{name} has no knockout run: its baseline is drawn")
            which = "baseline"
        runs.append(which)
    return runs[0], runs[1], ("; ".join(notes) + ".").capitalize() if notes else None


def _noise(layers: list[dict], term: str) -> float | None:
    """The mean half-width of a term's 95% intervals over the layers (bits); None without intervals."""
    widths = [(ci[1] - ci[0]) / 2 for layer in layers
              for ci in [(layer.get("ci") or {}).get(term)] if ci and None not in ci]
    return sum(widths) / len(widths) if widths else None


def correlation_rows(first: dict, second: dict, run: str = "baseline", other_run: str | None = None) -> list[dict]:
    """[{term, r, ci, text}] of `run` of the first analysis against `other_run` (default: the same) of the
    second (figures.layer_correlations: the layer index for equal depths, relative depth otherwise). r comes with a 95% Fisher interval over the layers, or
    not at all where a trajectory barely varies (its range within its own intervals' mean width, or flat)."""
    import math

    other_run = other_run or run
    correlations = figures.layer_correlations(first, second, run, other_run)
    a_layers, b_layers = _run(first, run), _run(second, other_run)
    n = min(len(a_layers), len(b_layers))
    rows = []
    for term, r in correlations.items():
        flat = []
        for layers in (a_layers, b_layers):
            values = [float(layer[term]) for layer in layers]
            spread = max(values) - min(values) if values else 0.0
            noise = _noise(layers, term)
            if spread == 0 or (noise is not None and spread <= 2 * noise):
                flat.append(spread)
        if r is None or flat:
            text = ("not given: the trajectory barely varies across layers (range "
                    f"{min(flat) if flat else 0.0:.3f} bits, within its intervals)")
            rows.append({"term": term, "r": None, "ci": None, "text": text})
            continue
        ci = None
        if n > 3 and abs(r) < 1:
            z, half = math.atanh(r), 1.96 / math.sqrt(n - 3)
            ci = [math.tanh(z - half), math.tanh(z + half)]
        text = f"{r:+.3f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}] over {n} layers" if ci else "")
        rows.append({"term": term, "r": r, "ci": ci, "text": text})
    return rows


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
        Output("compare-run-this", "options"), Output("compare-run-other", "options"),
        Input("compare-button", "n_clicks"), Input("compare-id", "value"), Input("analysis-id", "data"),
        Input("compare-run-this", "value"), Input("compare-run-other", "value"),
        prevent_initial_call=True,
    )
    def render_comparison(_clicks, other, analysis_id, run, other_run):
        return comparison_view(service, analysis_id, other, run, other_run)

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
            what = ""
            if item.get("model"):  # name model, tasks and the run it was (baseline only, or which knockout)
                knockout = item.get("knockout") or {}
                what = f": {item['model']} · {', '.join(item.get('tasks') or [])}" + (
                    f" · knockout {'+'.join(knockout.get('edges') or [])} {knockout.get('layers')}" if knockout
                    else " · baseline only")
            kept.append({"id": item["id"], "label": f"on the server, {created}{what}"})
            known.add(item["id"])
    return kept


def comparison_view(service, analysis_id: str | None, other: str | None, run: str | None = "baseline",
                    other_run: str | None = "baseline") -> tuple:
    """(figure, correlation table, message, this analysis's run options, the other's) of the Compare tab:
    each trace draws the run chosen for it (a knockout where the analysis has one, else its baseline, said)."""
    hint = figures.message_figure("Pick or paste another analysis to overlay it on this one.")
    other_id = analysis_ref(other)
    if not analysis_id or not other_id:
        return hint, None, None, run_options(None), run_options(None)
    try:
        first = data.result(service, analysis_id)
        second = data.result(service, other_id)
    except data.DataError as exc:
        return hint, None, f"Cannot compare: {exc}", run_options(None), run_options(None)
    run, other_run, note = chosen_runs(first, second, run, other_run)
    rows = [html.Tr([html.Th(figures.TERM_LABELS.get(row["term"], "Total")), html.Td(row["text"])])
            for row in correlation_rows(first, second, run, other_run)]
    runs = f"{run}s" if run == other_run else f"this analysis's {run} against the other's {other_run}"
    table = html.Div([html.H3(f"Layer-wise correlation (Pearson r across layers, {runs})"),
                      html.Table(className="metrics", children=[html.Tbody(rows)]),
                      html.P("r is given with a 95% Fisher interval over the layers (layers are not independent, "
                             "so read it as a rough guide), and not at all where a trajectory barely varies: its "
                             "range across layers within its own 95% intervals.", className="hint")])
    return (figures.comparison_figure(first, second, run, other_run), table, note,
            run_options(first), run_options(second))
