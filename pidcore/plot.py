"""Plotly figures of pidflow results, for notebooks, scripts and the dashboard (which calls these builders).

Every builder takes a result document (schema pidflow.result/1, as made by pidcore.pipeline.analysis.run_analysis or
returned by the API) or, where it says so, pidcore.pipeline.layerwise.LayerwiseResult objects (``layerwise(...)``'s
return value; pass a knockout run's result as ``knockout=`` and its decoder-layer window as ``window=``).
Study figures (pidflow.study/1 reports) come from pidcore.study.figures and are re-exported here.
Builders return plotly ``graph_objects.Figure``s: ``fig.show()`` draws them in Jupyter, ``fig.write_html()``
saves them. Pure functions: no I/O; plotly graph_objects only (no pandas).

All information quantities are in bits; "fraction" mode divides each term by the layer's total.
Colours follow the Okabe-Ito colour-blind-safe palette.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pidcore.study.figures import baseline_series, small_multiples, sweep_cells, sweep_heatmap

__all__ = [
    "TERMS", "TERM_NAMES", "fmt", "as_document", "TERM_LABELS", "TERM_COLOURS", "result_document", "stacked_figure", "difference_figure",
    "shared_y_max", "task_overlay_figure", "comparison_figure", "describe_run", "question_figure", "own_terms_figure",
    "attention_figure", "message_figure", "small_multiples", "sweep_heatmap", "baseline_series", "sweep_cells",
]

#: Plain names of the parts (the dashboard's wording, app/ui/wording.py, shows the same).
TERM_NAMES = {"redundancy": "Shared (redundancy)", "unique_vision": "Vision only (unique vision)",
              "unique_language": "Language only (unique language)", "synergy": "Only together (synergy)",
              "total": "Total"}
_RESULT_NAMES = {"unique1": "unique_vision", "unique2": "unique_language"}  # x1 = vision, x2 = language


def fmt(value, digits: int = 3, signed: bool = False) -> str:
    """A number for people: `digits` decimals, never "-0.000" (rounds to zero -> "0.000"), "n/a" for None/NaN."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if not isinstance(value, float) or math.isnan(value):
        return "n/a" if isinstance(value, float) else str(value)
    rounded = round(value, digits)
    if rounded == 0:
        rounded = 0.0
    text = f"{rounded:.{digits}f}"
    return ("+" + text if rounded >= 0 else text) if signed and rounded != 0 else text


TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")
TERM_LABELS = {term: TERM_NAMES[term] for term in TERMS}
TERM_COLOURS = {"redundancy": "#0072B2", "unique_vision": "#E69F00",
                "unique_language": "#009E73", "synergy": "#CC79A7"}
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
RUN_DASH = {"baseline": "solid", "knockout": "dash"}


def result_document(baseline, knockout=None, *, window=None, edges=None, tasks=None, model: str = "") -> dict:
    """A result document (the parts of pidflow.result/1 that the figures read) from pidcore.pipeline.layerwise
    LayerwiseResult objects: ``baseline`` and optionally ``knockout`` (the same questions, in the same order,
    analysed with the same bootstrap seed so that their draws are paired). ``window``: the knockout's decoder
    layers [first, last] (shaded; sets the layers the effect metrics average over); ``edges``: the blocked
    edges, for labels; ``tasks``: one task name per question (for task_overlay_figure), else "all".
    Layer i of a result is plot layer i (0 = embeddings when the layers came from pidflow's extraction).
    With bootstrap draws in both runs, the knockout effects carry paired 95% intervals (pidcore.pipeline.effects)."""
    from pidcore.pipeline.effects import add_intervals, knockout_effects

    def entries(result):
        out = []
        for index, layer in enumerate(result.layers):
            entry = {"layer": index, **{_RESULT_NAMES.get(k, k): float(v) for k, v in layer.pid.as_dict().items()},
                     "ci": ({_RESULT_NAMES.get(k, k): [float(lo), float(hi)] for k, (lo, hi) in layer.ci.items()}
                            if layer.ci else None),
                     "estimator": getattr(layer, "estimator", "corrected")}
            if getattr(layer, "draws", None) is not None:
                entry["draws"] = np.asarray(layer.draws, dtype=float).tolist()
            out.append(entry)
        return out

    def pointwise(result):
        per_layer = [np.asarray(layer.pointwise, dtype=float) for layer in result.layers]
        if not per_layer or any(p.ndim != 2 or len(p) != len(per_layer[0]) for p in per_layer):
            return None
        return np.stack(per_layer, axis=1).tolist()  # (question, layer, term)

    def public(layers):
        return [{key: value for key, value in entry.items() if key != "draws"} for entry in layers]

    base = entries(baseline)
    knocked = entries(knockout) if knockout is not None else None
    first = window is not None and list(window)
    if first and len(first) != 2:
        raise ValueError(f"window must be the knockout's [first, last] decoder layers, got {window!r}")
    effects = None
    if knocked is not None:
        effects = knockout_effects(base, knocked, window=first or None)
        effects = add_intervals(effects, base, knocked, estimator=base[0]["estimator"] if base else "corrected")
    points = {"baseline": pointwise(baseline), "knockout": pointwise(knockout) if knockout is not None else None}
    n = len(points["baseline"]) if points["baseline"] is not None else 0
    if tasks is not None and len(tasks) != n:
        raise ValueError(f"tasks names {len(tasks)} questions, the result holds {n}")
    knockout_request = ({"layers": [int(first[0]), int(first[1])] if first else None, "edges": list(edges or [])}
                        if knocked is not None else None)
    return {
        "schema": "pidflow.result/1",
        "request": {"model": model or "result", "tasks": sorted(set(tasks)) if tasks is not None else [],
                    "knockout": knockout_request},
        "model": {"name": model or "result"},
        "n_questions": n,
        "runs": {"baseline": {"layers": public(base)}, "knockout": {"layers": public(knocked)} if knocked else None},
        "effects": effects,
        "questions": [{"task": str(tasks[q]) if tasks is not None else "all"} for q in range(n)],
        "pointwise": points if points["baseline"] is not None else None,
    }


def as_document(source, knockout=None, window=None, **labels) -> dict:
    """``source`` as a result document: a dict is taken as one (pidflow.result/1); a LayerwiseResult (with
    an optional knockout LayerwiseResult and window) goes through result_document."""
    if source is None or isinstance(source, dict):
        if knockout is not None:
            raise TypeError("knockout= goes with LayerwiseResult objects; a result document holds its knockout run")
        return source
    if hasattr(source, "layers") and all(hasattr(layer, "pid") for layer in source.layers):
        return result_document(source, knockout, window=window, **labels)
    raise TypeError(f"expected a result document (dict) or a pidcore.pipeline.layerwise.LayerwiseResult, "
                    f"not {type(source).__name__}")


def _layout(fig: go.Figure, title: str, y_title: str, subtitle: str | None = None) -> go.Figure:
    """Common look; `subtitle` (model, tasks, run, id) travels with PNG/SVG exports."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left",
               **({"subtitle": {"text": subtitle, "font": {"size": 12, "color": "#5a5a60"}}} if subtitle else {})},
        template="plotly_white", margin={"l": 60, "r": 20, "t": 70 if subtitle else 50, "b": 10}, height=400,
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "traceorder": "normal"},
        font={"size": 13},
    )
    fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1 if _few_layers(fig) else None,
                     unifiedhovertitle={"text": "layer %{x}"})
    fig.update_yaxes(title_text=y_title, zeroline=True)
    return fig


def _labels(values: list[float], signed: bool = False) -> list[str]:
    """Hover texts: 3 decimals, never "-0.000"."""
    return [fmt(float(v), 3, signed) for v in values]


def knockout_layers(document: dict) -> tuple[int, int] | None:
    """The knockout window as decoder layers [first, last], or None."""
    window = (((document or {}).get("request") or {}).get("knockout") or {}).get("layers")
    return (int(window[0]), int(window[1])) if window and len(window) == 2 else None


def shade_window(fig: go.Figure, document: dict, **subplot) -> go.Figure:
    """Shade the knocked-out layers. Decoder layer d is plot layer d + 1 (plot layer 0 = embeddings)."""
    window = knockout_layers(document)
    if window:
        fig.add_vrect(x0=window[0] + 0.5, x1=window[1] + 1.5, fillcolor="#999999", opacity=0.15, line_width=0,
                      annotation_text="knocked-out layers", annotation_position="top left", **subplot)
    return fig


def _few_layers(fig: go.Figure) -> bool:
    return all(trace.x is None or len(trace.x) <= 40 for trace in fig.data)


def message_figure(text: str) -> go.Figure:
    """An empty figure that says `text` in its middle (empty and error states)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 15, "color": "#555"})
    fig.update_layout(template="plotly_white", height=160, xaxis={"visible": False},
                      yaxis={"visible": False}, margin={"l": 20, "r": 20, "t": 20, "b": 20})
    return fig


def run_layers(document: dict, run: str) -> list[dict]:
    """The per-layer entries of `run` ("baseline" or "knockout"), sorted by layer; [] when absent."""
    entry = ((document or {}).get("runs") or {}).get(run) or {}
    return sorted(entry.get("layers") or [], key=lambda layer: layer["layer"])


def term_values(layers: list[dict], term: str, mode: str = "bits") -> list[float]:
    """One value per layer: bits, or the share of the layer's total in "fraction" mode (0 when total is 0)."""
    if mode not in ("bits", "fraction"):
        raise ValueError(f"mode must be 'bits' or 'fraction', not {mode!r}")
    values = []
    for layer in layers:
        value = float(layer[term])
        if mode == "fraction":
            total = float(layer.get("total") or sum(float(layer[t]) for t in TERMS))
            value = value / total if total > 0 else 0.0
        values.append(value)
    return values


def _ci_bounds(layers: list[dict], term: str, mode: str) -> tuple[list[float], list[float]] | None:
    """Half-widths below and above each layer's value (same units as `mode`); None without CIs."""
    below, above = [], []
    for layer in layers:
        interval = (layer.get("ci") or {}).get(term)
        if not interval or len(interval) != 2 or any(v is None for v in interval):
            return None
        scale = 1.0
        if mode == "fraction":
            total = float(layer.get("total") or 0.0)
            scale = 1.0 / total if total > 0 else 0.0
        value = float(layer[term])
        below.append(max(0.0, value - float(interval[0])) * scale)
        above.append(max(0.0, float(interval[1]) - value) * scale)
    return below, above


def shared_y_max(document: dict, *, knockout=None) -> float | None:
    """The top of both runs' stacks (bits), confidence bands included, so baseline and knockout share a
    y scale."""
    document = as_document(document, knockout)
    tops = []
    for run in ("baseline", "knockout"):
        layers = run_layers(document, run)
        tops += [float(layer["total"]) for layer in layers]
        for layer in layers:
            stacked, top = 0.0, 0.0
            for term in TERMS:
                stacked += float(layer[term])
                interval = (layer.get("ci") or {}).get(term)
                if interval and len(interval) == 2 and interval[1] is not None:
                    top = max(top, stacked + max(0.0, float(interval[1]) - float(layer[term])))
            tops.append(top)
    return max(tops) if tops and max(tops) > 0 else None


def stacked_figure(document: dict, run: str = "baseline", mode: str = "bits", title: str | None = None,
                   y_max: float | None = None, subtitle: str | None = None, *, knockout=None,
                   window=None) -> go.Figure:
    """Stacked areas R, U_vision, U_language, S per layer, one point per layer; shaded bands show
    each term's confidence interval around its stack boundary when the run has CIs. `y_max` (bits)
    fixes the y range so that side-by-side runs compare at a glance (bands included). Hover: each part
    and the layer's total; the knockout run shades its window. `document` may be a LayerwiseResult (then
    `knockout`: the knockout run's LayerwiseResult, `window`: its decoder layers)."""
    document = as_document(document, knockout, window)
    layers = run_layers(document, run)
    if not layers:
        return message_figure(f"No {run} run in this analysis.")
    x = [layer["layer"] for layer in layers]
    fig = go.Figure()
    cumulative = [0.0] * len(layers)
    for term in TERMS:
        values = term_values(layers, term, mode)
        # a bias-corrected part whose truth is near 0 can come out slightly below 0: it is stacked as 0 (an
        # area cannot be negative) and its hover gives the estimate
        stacked = [max(v, 0.0) for v in values]
        cumulative = [c + v for c, v in zip(cumulative, stacked, strict=True)]
        labels = [label + (" (estimate below 0, drawn as 0)" if v < 0 else "")
                  for label, v in zip(_labels(values), values, strict=True)]
        fig.add_trace(go.Scatter(
            x=x, y=stacked, name=TERM_LABELS[term], stackgroup="pid", mode="lines+markers",
            line={"color": TERM_COLOURS[term], "width": 1.5}, fillcolor=_rgba(TERM_COLOURS[term], 0.55),
            customdata=labels, hovertemplate="%{customdata}" + (" bits" if mode == "bits" else ""),
            meta=term,
        ))
        bounds = _ci_bounds(layers, term, mode)
        if bounds is not None:
            lower = [c - b for c, b in zip(cumulative, bounds[0], strict=True)]
            upper = [c + a for c, a in zip(cumulative, bounds[1], strict=True)]
            fig.add_trace(go.Scatter(x=x, y=lower, mode="lines", line={"width": 0}, showlegend=False,
                                     hoverinfo="skip", meta=f"ci:{term}"))
            fig.add_trace(go.Scatter(x=x, y=upper, mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor=_rgba("#000000", 0.15), showlegend=False, hoverinfo="skip",
                                     meta=f"ci:{term}", name=f"{TERM_LABELS[term]} CI"))
    totals = [float(layer["total"]) for layer in layers]
    fig.add_trace(go.Scatter(x=x, y=cumulative, mode="lines", line={"width": 0, "color": "rgba(0,0,0,0)"},
                             showlegend=False, name="Total", meta="total", customdata=_labels(totals),
                             hovertemplate="%{customdata} bits"))
    y_title = "information about the answer (bits)" if mode == "bits" else "fraction of the layer's total"
    fig = _layout(fig, title or f"{run.capitalize()}: decomposition per layer", y_title, subtitle)
    if mode == "fraction":
        fig.update_yaxes(range=[0, 1.05])
    elif y_max is not None:
        fig.update_yaxes(range=[0, 1.05 * y_max])
    if run == "knockout":
        shade_window(fig, document)
    return fig


def difference_values(document: dict, term: str) -> list[float]:
    """knockout - baseline per layer for `term` (bits); layers matched by index."""
    baseline = {layer["layer"]: layer for layer in run_layers(document, "baseline")}
    knockout = run_layers(document, "knockout")
    return [float(layer[term]) - float(baseline[layer["layer"]][term])
            for layer in knockout if layer["layer"] in baseline]


def difference_figure(document: dict, subtitle: str | None = None, *, knockout=None, window=None) -> go.Figure:
    """Per-layer change knockout - baseline of each PID term and of the total (bits), with paired 95%
    bands where the result has them. `document` may be the baseline's LayerwiseResult with `knockout`
    the knockout run's (the same questions and bootstrap seed) and `window` its decoder layers."""
    document = as_document(document, knockout, window)
    knockout = run_layers(document, "knockout")
    if not knockout:
        return message_figure("No knockout in this analysis: tick a knockout edge in New analysis.")
    baseline = {layer["layer"] for layer in run_layers(document, "baseline")}
    x = [layer["layer"] for layer in knockout if layer["layer"] in baseline]
    fig = go.Figure()
    per_layer = {entry["layer"]: entry for entry in ((document.get("effects") or {}).get("per_layer") or [])}
    for term in (*TERMS, "total"):
        colour = TERM_COLOURS.get(term, "#000000")
        values = difference_values(document, term)
        bands = [(per_layer.get(layer) or {}).get("ci", {}).get(term) for layer in x]
        if all(bands):  # paired intervals: the same resampled questions in both runs
            fig.add_trace(go.Scatter(x=x + x[::-1], y=[b[1] for b in bands] + [b[0] for b in bands][::-1],
                                     fill="toself", fillcolor=_rgba(colour, 0.15), line={"width": 0},
                                     mode="lines", hoverinfo="skip", showlegend=False, meta=f"ci:{term}"))
        noise = [bool((per_layer.get(layer) or {}).get("within_noise", {}).get(term)) for layer in x]
        fig.add_trace(go.Scatter(
            x=x, y=values, name=TERM_LABELS.get(term, "Total"), mode="lines+markers",
            line={"color": colour, "dash": "dot" if term == "total" else "solid"}, meta=term,
            marker={"symbol": ["circle-open" if quiet else "circle" for quiet in noise], "size": 8},
            customdata=[label + (" (within noise)" if quiet else "") for label, quiet in
                        zip(_labels(values, signed=True), noise, strict=True)],
            hovertemplate="layer %{x}: %{customdata} bits",
        ))
    fig.add_hline(y=0, line={"color": "#777", "width": 1})
    shade_window(fig, document)
    if per_layer and any("within_noise" in entry for entry in per_layer.values()):
        fig.add_annotation(text="bands: paired 95% intervals; open markers: within the noise", xref="paper",
                           yref="paper", x=1, y=1.02, showarrow=False, xanchor="right", yanchor="bottom",
                           font={"size": 11, "color": "#555"})
    return _layout(fig, "Knockout - baseline per layer", "change of information (bits)", subtitle)


def task_series(document: dict, run: str = "baseline", term: str = "total") -> dict[str, list[float]]:
    """Mean pointwise `term` per layer for each task of the analysis (bits), from `pointwise[run]`."""
    pointwise = ((document or {}).get("pointwise") or {}).get(run)
    questions = (document or {}).get("questions") or []
    if not pointwise or len(pointwise) != len(questions):
        return {}
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for question, per_layer in zip(questions, pointwise, strict=True):
        values = [sum(v) if term == "total" else v[TERMS.index(term)] for v in per_layer]
        task = question.get("task") or "all"
        if task not in sums:
            sums[task], counts[task] = [0.0] * len(values), 0
        sums[task] = [s + v for s, v in zip(sums[task], values, strict=True)]
        counts[task] += 1
    return {task: [s / counts[task] for s in total] for task, total in sums.items()}


def task_overlay_figure(document: dict, term: str = "total", run: str = "baseline", *, tasks=None) -> go.Figure:
    """One line per task: mean pointwise `term` per layer (bits). For a LayerwiseResult, `tasks` names
    each question's task."""
    document = as_document(document, tasks=tasks) if tasks is not None else as_document(document)
    series = task_series(document, run, term)
    if not series:
        return message_figure("No per-question decomposition in this analysis to compare tasks.")
    fig = go.Figure()
    for index, (task, values) in enumerate(sorted(series.items())):
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, name=task, mode="lines+markers",
                                 line={"color": SERIES_COLOURS[index % len(SERIES_COLOURS)]}, meta=task))
    label = TERM_LABELS.get(term, "Total")
    return _layout(fig, f"Tasks compared: {label} per layer ({run})", "information (bits)")


def describe(document: dict) -> str:
    """A short label for an analysis: model, tasks and knockout."""
    request = (document or {}).get("request") or {}
    model_info = (document or {}).get("model") or {}
    model = model_info.get("name") or request.get("model", "?")
    if model.startswith("features:"):  # an uploaded features file: short hash and the model it came from
        model = model[:len("features:") + 12] + (f" ({model_info['source_model']})"
                                                  if model_info.get("source_model") else "")
    tasks = ", ".join(request.get("tasks") or []) or "?"
    knockout = request.get("knockout")
    text = f"{model} · {tasks}"
    if knockout:
        text += " · knockout " + ", ".join(knockout.get("edges") or [])
    return text


def relative_depth(n: int) -> list[float]:
    """Layer positions scaled to 0..1 so that models of different depth share an axis."""
    return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def pearson(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation of two equal-length series; None when undefined (constant or too short)."""
    if len(a) != len(b) or len(a) < 2:
        return None
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    if var_a <= 0 or var_b <= 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def _resample(values: list[float], n: int) -> list[float]:
    """Linear interpolation of `values` (on relative depth) at `n` evenly spaced points."""
    if len(values) == n:
        return list(values)
    source = relative_depth(len(values))
    out = []
    for t in relative_depth(n):
        j = min(max(0, sum(1 for s in source if s <= t) - 1), len(values) - 2)
        span = source[j + 1] - source[j]
        w = (t - source[j]) / span if span > 0 else 0.0
        out.append(values[j] * (1 - w) + values[j + 1] * w)
    return out


def describe_run(document: dict, run: str = "baseline") -> str:
    """describe() for the run drawn: model · tasks · "baseline", or · "knockout <edges>, decoder layers a-b"."""
    document = as_document(document)
    text = describe({**document, "request": {**((document or {}).get("request") or {}), "knockout": None}})
    if run != "knockout":
        return f"{text} · baseline"
    knockout = ((document or {}).get("request") or {}).get("knockout") or {}
    window = knockout_layers(document)
    return (f"{text} · knockout {', '.join(knockout.get('edges') or [])}"
            + (f", decoder layers {window[0]}-{window[1]}" if window else ""))


def layer_correlations(first: dict, second: dict, run: str = "baseline",
                       other_run: str | None = None) -> dict[str, float | None]:
    """Pearson correlation across layers of each term (and total) between `run` of the first analysis and
    `other_run` (default: the same run) of the second. Analyses of equal depth are compared layer by layer;
    of different depth on relative depth (the deeper one is interpolated)."""
    a_layers = run_layers(as_document(first), run)
    b_layers = run_layers(as_document(second), other_run or run)
    if not a_layers or not b_layers:
        return {}
    n = min(len(a_layers), len(b_layers))
    result = {}
    for term in (*TERMS, "total"):
        a = _resample(term_values(a_layers, term) if term != "total" else [float(x["total"]) for x in a_layers], n)
        b = _resample(term_values(b_layers, term) if term != "total" else [float(x["total"]) for x in b_layers], n)
        result[term] = pearson(a, b)
    return result


def comparison_figure(first: dict, second: dict, run: str = "baseline", other_run: str | None = None) -> go.Figure:
    """Small multiples, one panel per term on a shared y scale: solid = `run` of this analysis, dashed =
    `other_run` (default: the same run) of the other, each named in the legend by the run it draws. Analyses
    of equal depth share the layer index (0 = embeddings); of different depth, relative depth."""
    first, second = as_document(first), as_document(second)
    drawn = ((first, run, "solid", "this"), (second, other_run or run, "dash", "other"))
    same_depth = len(run_layers(first, run)) == len(run_layers(second, other_run or run))
    fig = make_subplots(rows=1, cols=len(TERMS), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[TERM_LABELS[term] for term in TERMS])
    for document, which, dash, tag in drawn:
        layers = run_layers(document, which)
        depth = [layer["layer"] for layer in layers] if same_depth else relative_depth(len(layers))
        for column, term in enumerate(TERMS, start=1):
            values = term_values(layers, term)
            fig.add_trace(go.Scatter(
                x=depth, y=values, mode="lines+markers", meta=f"{tag}:{term}",
                name=f"{tag}: {describe_run(document, which)}", legendgroup=tag, showlegend=column == 1,
                line={"color": SERIES_COLOURS[0] if tag == "this" else SERIES_COLOURS[1], "dash": dash},
                customdata=[[layer["layer"], label] for layer, label in zip(layers, _labels(values), strict=True)],
                hovertemplate=f"{which} layer %{{customdata[0]}}: %{{customdata[1]}} bits",
            ), row=1, col=column)
    axis = "layer" if same_depth else "relative depth"
    fig = _layout(fig, f"Two analyses compared, one panel per part ({axis})", "information (bits)")
    if same_depth:
        fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1 if len(depth) <= 13 else None,
                         unifiedhovertitle={"text": "layer %{x}"})
    else:
        fig.update_xaxes(title_text="relative depth", dtick=0.5, unifiedhovertitle={"text": "depth %{x:.2f}"})
    fig.update_yaxes(title_text=None)
    fig.update_yaxes(title_text="information (bits)", row=1, col=1)
    fig.update_layout(height=380, hovermode="closest")
    return fig


def question_figure(view: dict, document: dict | None = None) -> go.Figure:
    """A question's pointwise decomposition per layer (bits): baseline solid, knockout dashed; the knockout
    window of `document` shaded."""
    fig = go.Figure()
    for run in ("baseline", "knockout"):
        layers = ((view or {}).get(run) or {}).get("layers") or []
        for term in TERMS:
            if not layers:
                continue
            values = [float(layer[term]) for layer in layers]
            fig.add_trace(go.Scatter(
                x=[layer["layer"] for layer in layers], y=values,
                name=f"{TERM_LABELS[term]} ({run})", mode="lines+markers", meta=f"{run}:{term}",
                line={"color": TERM_COLOURS[term], "dash": RUN_DASH[run]}, customdata=_labels(values, signed=True),
                hovertemplate="%{customdata} bits",
            ))
    if not fig.data:
        return message_figure("This analysis holds no per-question decomposition.")
    if (view or {}).get("knockout") and document:
        shade_window(fig, document)
    return _layout(fig, "This question's share of each part, per layer", "pointwise information (bits)")


def _rgba(hex_colour: str, alpha: float) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def attention_grid(maps: dict, layer: int, source: str = "question", head: int | None = None) -> list[list[float]]:
    """One attention map (rows x cols of probabilities): decoder layer `layer`, from the question tokens or
    the last position, mean over heads or head `head`."""
    entry = maps["layers"][layer]
    return entry[source] if head is None else entry[f"{source}_heads"][head]


def attention_figure(maps: dict | None, layer: int, source: str = "question", head: int | None = None,
                     image_url: str | None = None, title: str = "", z_max: float | None = None) -> go.Figure:
    """The attention map drawn over the image: one cell per image patch, the picture underneath."""
    if not maps:
        return message_figure("No attention map.")
    grid = attention_grid(maps, layer, source, head)
    rows, cols = len(grid), len(grid[0])
    fig = go.Figure(go.Heatmap(
        z=grid, colorscale="Viridis", opacity=0.6, zmin=0, zmax=z_max, meta=f"attention:{source}",
        colorbar={"title": {"text": "attention"}, "thickness": 12},
        hovertemplate="patch row %{y}, column %{x}: %{z:.3f}<extra></extra>"))
    if image_url:
        fig.add_layout_image(source=image_url, xref="x", yref="y", x=-0.5, y=-0.5, sizex=cols, sizey=rows,
                             sizing="stretch", layer="below", opacity=1.0)
    who = "question tokens" if source == "question" else "last position"
    heads = "mean over heads" if head is None else f"head {head}"
    share = sum(map(sum, grid))
    fig.update_layout(title={"text": title or f"Attention from the {who}", "x": 0.01, "xanchor": "left",
                             "subtitle": {"text": f"decoder layer {layer}, {heads}; {share:.0%} of it on the image",
                                          "font": {"size": 12}}},
                      template="plotly_white", height=360, margin={"l": 20, "r": 20, "t": 70, "b": 20})
    fig.update_xaxes(visible=False, range=[-0.5, cols - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[rows - 0.5, -0.5], scaleanchor="x", constrain="domain")
    return fig


def own_terms_figure(terms: dict, document: dict) -> go.Figure:
    """A new question's pointwise terms per layer (bits), one panel per part, over the analysis's own
    questions: their 10-90 % range (band) and median (dotted)."""
    layers = (terms or {}).get("layers") or []
    if not layers:
        return message_figure("No pointwise terms for your question.")
    stored = ((document or {}).get("pointwise") or {}).get("baseline")
    fig = make_subplots(rows=1, cols=len(TERMS), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[TERM_LABELS[term] for term in TERMS])
    x = [layer["layer"] for layer in layers]
    for column, term in enumerate(TERMS, start=1):
        if stored:
            values = np.asarray(stored, dtype=float)[:, :len(x), column - 1]  # (questions, layers)
            low, mid, high = (np.percentile(values, q, axis=0).tolist() for q in (10, 50, 90))
            fig.add_trace(go.Scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", mode="lines", line={"width": 0},
                                     fillcolor="rgba(120,120,130,0.18)", hoverinfo="skip", meta=f"band:{term}",
                                     name="the analysis's questions (10-90 %)", legendgroup="band",
                                     showlegend=column == 1), row=1, col=column)
            fig.add_trace(go.Scatter(x=x, y=mid, mode="lines", line={"color": "#77777f", "dash": "dot"},
                                     name="their median", legendgroup="median", showlegend=column == 1,
                                     meta=f"median:{term}", customdata=_labels(mid, signed=True),
                                     hovertemplate="median %{customdata} bits"), row=1, col=column)
        mine = [float(layer[term]) for layer in layers]
        fig.add_trace(go.Scatter(x=x, y=mine, mode="lines+markers", line={"color": TERM_COLOURS[term], "width": 3},
                                 name="your question", legendgroup="own", showlegend=column == 1,
                                 meta=f"own:{term}", customdata=_labels(mine, signed=True),
                                 hovertemplate="yours %{customdata} bits"), row=1, col=column)
    fig = _layout(fig, "Your question among the analysis's questions: pointwise terms per layer",
                  "pointwise information (bits)")
    fig.update_yaxes(title_text=None)
    fig.update_yaxes(title_text="pointwise information (bits)", row=1, col=1)
    fig.update_xaxes(title_text="layer", dtick=1 if len(x) <= 16 else None)
    fig.update_layout(height=360, hovermode="x unified")
    return fig
