"""Plotly figures of a study report (pidflow.study/1). Pure functions: report dict in, figure out.

Small multiples: one stacked plot of R, U_v, U_l, S (bits) per model x task on shared axes.
Sweep heatmap: window centre x pooled layer, one term's knockout delta (bits) at a time, on a colour scale
symmetric about 0 that reaches 10% past the largest |delta| (no cell saturates), each row's cut outlined.
Colours follow the Okabe-Ito palette used by the dashboard.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")
DELTA_TERMS = (*TERMS, "total")
TERM_LABELS = {"redundancy": "R", "unique_vision": "U_vision", "unique_language": "U_language",
               "synergy": "S", "total": "total"}
TERM_COLOURS = {"redundancy": "#0072B2", "unique_vision": "#E69F00", "unique_language": "#009E73",
                "synergy": "#CC79A7"}


def baseline_series(report: dict, recipe: str) -> dict:
    """(model, task) -> baseline layer entries for one recipe."""
    return {(s["model"], s["task"]): s["layers"] for s in report["series"]
            if s["recipe"] == recipe and s["kind"] == "baseline"}


def small_multiples(report: dict, recipe: str) -> go.Figure:
    """A grid (rows = models, columns = tasks) of stacked R/U_v/U_l/S areas per layer, shared axes (bits)."""
    models, tasks = list(report["request"]["models"]), list(report["request"]["tasks"])
    series = baseline_series(report, recipe)
    fig = make_subplots(rows=len(models), cols=len(tasks), shared_xaxes=True, shared_yaxes=True,
                        column_titles=tasks, row_titles=models, horizontal_spacing=0.02,
                        vertical_spacing=0.06 if len(models) > 1 else 0.0)
    for row, model in enumerate(models, start=1):
        for col, task in enumerate(tasks, start=1):
            layers = series.get((model, task)) or []
            for term in TERMS:
                bounds = [((layer.get("ci") or {}).get(term) or [None, None]) for layer in layers]
                interval = "<br>95%% interval [%{customdata[0]:.3f}, %{customdata[1]:.3f}]" if any(
                    lo is not None for lo, _ in bounds) else ""
                fig.add_trace(go.Scatter(
                    x=[layer["layer"] for layer in layers], y=[layer[term] for layer in layers],
                    name=TERM_LABELS[term], legendgroup=term, showlegend=row == 1 and col == 1,
                    stackgroup=f"{row}-{col}", mode="lines", line={"width": 0.5, "color": TERM_COLOURS[term]},
                    customdata=bounds,
                    hovertemplate=f"{model} · {task}<br>layer %{{x}}<br>{TERM_LABELS[term]} %{{y:.3f}} bits"
                                  f"{interval}<extra></extra>"), row=row, col=col)
            _total_band(fig, layers, row, col, first=row == 1 and col == 1)
    fig.update_layout(template="plotly_white", height=max(260, 220 * len(models)) + 80,
                      title={"text": f"PID per layer, baseline ({recipe} recipe), bits", "x": 0.01},
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 40, "t": 70, "b": 60})
    fig.update_xaxes(title_text=None, dtick=1)
    fig.update_yaxes(rangemode="tozero")
    for col in range(1, len(tasks) + 1):
        fig.update_xaxes(title_text="layer", row=len(models), col=col)
    for row in range(1, len(models) + 1):
        fig.update_yaxes(title_text="bits", row=row, col=1)
    return fig


def _total_band(fig: go.Figure, layers: list[dict], row: int, col: int, first: bool) -> None:
    """The total's 95% interval as a grey band around the top of the stack, and the total as a dotted line
    (only when the analyses have intervals: a stacked area cannot carry each term's own band honestly)."""
    bounds = [(layer.get("ci") or {}).get("total") for layer in layers]
    if not layers or not all(bounds):
        return
    x = [layer["layer"] for layer in layers]
    fig.add_trace(go.Scatter(x=x + x[::-1], y=[hi for _, hi in bounds] + [lo for lo, _ in bounds][::-1],
                             mode="lines", fill="toself", fillcolor="rgba(0,0,0,0.12)", line={"width": 0},
                             hoverinfo="skip",
                             name="total, 95% interval", legendgroup="total-band", showlegend=first, meta="ci:total"),
                  row=row, col=col)
    fig.add_trace(go.Scatter(x=x, y=[layer["total"] for layer in layers], mode="lines",
                             line={"color": "#222", "width": 1, "dash": "dot"}, name="total", legendgroup="total",
                             showlegend=first, meta="total",
                             hovertemplate="layer %{x}<br>total %{y:.3f} bits<extra></extra>"), row=row, col=col)


def sweep_cells(report: dict, model: str, task: str, recipe: str) -> list[dict]:
    return sorted((k for k in report["knockouts"] if k["kind"] == "sweep" and k["model"] == model
                   and k["task"] == task and k["recipe"] == recipe), key=lambda k: k["centre"])


def sweep_heatmap(report: dict, model: str, task: str, recipe: str, term: str = "unique_vision",
                  buttons: bool = False) -> go.Figure:
    """Heatmap of the knockout delta (knockout - baseline, bits) of `term`: rows = window centre, columns =
    pooled layer. With `buttons`, a menu switches the term inside the figure (for static HTML)."""
    cells = sweep_cells(report, model, task, recipe)
    fig = go.Figure()
    if not cells:
        fig.add_annotation(text="no knockout sweep in this study", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(template="plotly_white", height=200, xaxis={"visible": False}, yaxis={"visible": False})
        return fig
    layers = [entry["layer"] for entry in cells[0]["per_layer"]]
    centres = [cell["centre"] for cell in cells]

    def matrix(name):
        return [[entry[name] for entry in cell["per_layer"]] for cell in cells]

    values = matrix(term)
    bound = _bound(values)
    fig.add_trace(go.Heatmap(z=values, x=layers, y=centres, colorscale="RdBu", reversescale=True,
                             zmid=0.0, zmin=-bound, zmax=bound, colorbar={"title": {"text": "Δ bits"}},
                             hovertemplate="window centre %{y}<br>layer %{x}<br>Δ %{z:.3f} bits<extra></extra>"))
    title = f"knockout sweep {model} · {task} ({recipe}): Δ{TERM_LABELS[term]} (bits)"
    if buttons:
        options = []
        for name in DELTA_TERMS:
            z = matrix(name)
            edge = _bound(z)
            options.append({"label": TERM_LABELS[name], "method": "update",
                            "args": [{"z": [z], "zmin": [-edge], "zmax": [edge]},
                                     {"title.text": f"knockout sweep {model} · {task} ({recipe}): "
                                                    f"Δ{TERM_LABELS[name]} (bits)"}]})
        fig.update_layout(updatemenus=[{"buttons": options, "direction": "right", "x": 0, "y": 1.18,
                                        "xanchor": "left", "type": "buttons",
                                        "active": list(DELTA_TERMS).index(term)}])
    edges = "+".join(cells[0]["edges"])
    for cell in cells:  # the cut: decoder layers first..last feed pooled layers first + 1..last + 1
        first, last = cell["window"]
        fig.add_shape(type="rect", x0=first + 0.5, x1=last + 1.5, y0=cell["centre"] - 0.5, y1=cell["centre"] + 0.5,
                      line={"color": "#222", "width": 1.5}, fillcolor="rgba(0,0,0,0)", layer="above")
    used = next((part.get("sweep") for part in report.get("parts", [])
                 if part["model"] == model and part["task"] == task and part.get("sweep")), None)
    width = ""
    if used:
        width = f", k = {used['k_used']}" + ("" if used["k_used"] == used["k_requested"] else
                                             f" of {used['k_requested']} asked")
    fig.update_layout(template="plotly_white", height=380, title={"text": title, "x": 0.01},
                      margin={"l": 70, "r": 20, "t": 90, "b": 50},
                      xaxis={"title": {"text": "pooled layer (outlined: the layers each row's cut feeds)"}, "dtick": 1},
                      yaxis={"title": {"text": f"window centre ({edges}{width})"}, "dtick": 1})
    return fig


def _bound(values: list[list[float]]) -> float:
    """The colour scale's half-range: 10% past the largest |delta|, so the strongest cell stays readable."""
    return 1.1 * max((abs(v) for row in values for v in row), default=0.0) or 1.0
