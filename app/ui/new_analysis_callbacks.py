"""The New analysis tab: the request form (tasks of the dataset, the knockout window of the model), the
request it builds, its expected cost and the live check, and a refused request's message next to its field.
Submitting is the page's `control` (page_callbacks), which follows the job."""

from __future__ import annotations

import re

from dash import Input, Output, State, ctx, html, no_update

from app.ui import data, wording
from app.ui.layout import DEFAULT_LAYERS, edge_options, layer_marks, model_summary
from pidcore.pipeline import costs


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


def register(app, service) -> None:
    """The form's callbacks."""
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
