"""The dashboard's component tree: header, new-analysis form, results and question explorer.
No data access here: `build_layout` gets the catalogue (models, datasets) it needs as arguments."""

from __future__ import annotations

from dash import dcc, html

from app.ui.wording import OPTION_HELP, TERM_HELP, TERM_NAMES

KNOCKOUT_EDGES = ("image->question", "image->last", "question->last", "last->last", "question->image")
DEFAULT_LAYERS = 32  # slider size when a model's layer count is unknown
PLOT_FORMATS = ("png", "svg")


def graph_config(fmt: str = "png", filename: str = "pidflow") -> dict:
    """Plotly modebar config: the camera button downloads the plot in `fmt` (png or svg)."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2 if fmt == "png" else 1}}


def graph(graph_id: str, figure: dict | None = None, config: dict | None = None) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=config or graph_config(filename=graph_id), className="plot",
                     figure=figure or {"data": [], "layout": {"height": 50, "xaxis": {"visible": False},
                                                             "yaxis": {"visible": False}}})


def layer_marks(num_layers: int) -> dict:
    step = max(1, num_layers // 8)
    marks = {i: str(i) for i in range(0, num_layers, step)}
    marks[num_layers - 1] = str(num_layers - 1)
    return marks


def help_mark(text: str) -> html.Abbr:
    """A "?" beside a name; its one-line help shows on hover (and is read by screen readers)."""
    return html.Abbr("?", title=text, className="help", **{"aria-label": text})


def _field(label: str, control, hint: str | None = None, help_key: str | None = None) -> html.Div:
    heading = [label, " ", help_mark(OPTION_HELP[help_key])] if help_key else label
    children = [html.Label(heading, className="field-label"), control]
    if help_key:  # a refused request's message appears here, next to its field
        children.append(html.Div(id=f"{help_key}-error", className="field-error", role="alert"))
    if hint:
        children.append(html.Div(hint, className="hint"))
    return html.Div(children, className="field")


def model_label(model: dict) -> str:
    """'name (family, N layers)' for the model list; parts that are unknown are left out."""
    parts = [model["family"]] if model.get("family") else []
    parts += [f"{model['num_layers']} layers"] if model.get("num_layers") else []
    return model["name"] + (f" ({', '.join(parts)})" if parts else "")


def model_summary(model: dict) -> str:
    """One line under the model list: family, layer count, the knockout edges it supports, special layers."""
    if model.get("unsupported"):
        return model["unsupported"]
    if not model.get("family"):
        return "Family unknown here (config not on this server); the worker checks the model."
    line = f"{model['family']} · {model.get('num_layers') or '?'} decoder layers · knockout edges: " + \
        ", ".join(model.get("knockout_edges") or [])
    if model.get("cross_attention_layers"):
        line += f" · image via cross-attention layers {model['cross_attention_layers']}"
    if model.get("linear_attention_layers"):
        line += f" · no knockouts on layers without attention {model['linear_attention_layers']}"
    return line


def edge_options(model: dict) -> list[dict]:
    """Knockout edge choices, those the model does not support disabled (all enabled when unknown)."""
    supported = model.get("knockout_edges") or KNOCKOUT_EDGES[:4]
    return [{"label": f" {edge}", "value": edge, "disabled": edge not in supported} for edge in KNOCKOUT_EDGES]


def plot_block(graph_id: str, hidden: bool = False, shown: dict | None = None) -> html.Div:
    """A plot with the sentence under it (what Y is, what the unit is about) and room for the result's
    one-line estimator note; `shown`: the Results tab already rendered (callbacks.rendered_results)."""
    shown = shown or {}
    return html.Div(id=f"{graph_id}-block", className="plot-block", hidden=hidden, children=[
        graph(graph_id, shown.get(f"figure:{graph_id}"), shown.get(f"config:{graph_id}")),
        html.P(shown.get(f"caption:{graph_id}"), id=f"{graph_id}-caption", className="caption"),
        html.P(shown.get(f"method:{graph_id}"), id=f"{graph_id}-method", className="caption method"),
    ])


def glossary() -> html.Details:
    """The four parts (and the total) in a sentence each."""
    return html.Details(className="glossary", open=False, children=[
        html.Summary("What the parts mean"),
        html.Ul([html.Li([html.B(TERM_NAMES[term]), f": {TERM_HELP[term]}."]) for term in TERM_HELP]),
    ])


def new_analysis_form(models: list[dict], datasets: list[dict], hosted: bool, defaults: dict) -> html.Div:
    """The request form, filled with `defaults` (a whole request: app.service.DEFAULT_REQUEST)."""
    model_options = [{"label": model_label(m), "value": m["name"]} for m in models] or \
        [{"label": "demo", "value": "demo"}]
    dataset_options = [{"label": d.get("name") + (" (not configured on this server)" if d.get("unavailable") else ""),
                        "value": d.get("name")} for d in datasets] or \
        [{"label": "easy-vqa", "value": "easy-vqa"}]
    first_model = next((m for m in models if m["name"] == defaults["model"]), models[0] if models else {})
    num_layers = first_model.get("num_layers") or DEFAULT_LAYERS
    default_dataset = next((d for d in datasets if d.get("name") == defaults["dataset"]), {})
    task_options = [{"label": name, "value": name} for name in
                    (t if isinstance(t, str) else t.get("name") for t in default_dataset.get("tasks", []))]
    token_field = _field("API token", dcc.Input(id="token", type="password", placeholder="required on this server",
                                                debounce=False, className="input"),
                         "This server is hosted: starting analyses needs an API token.") if hosted else \
        html.Div(dcc.Input(id="token", type="hidden", value=""), hidden=True)
    return html.Div(className="panel form", children=[
        html.H2("New analysis"),
        html.Div(className="form-grid", children=[
            _field("Model", html.Div([
                dcc.Dropdown(id="model", options=model_options, value=first_model.get("name", "demo"), clearable=False),
                html.Div(model_summary(first_model), id="model-info", className="hint")]), help_key="model"),
            _field("Dataset", dcc.Dropdown(id="dataset", persistence=True, persistence_type="session", options=dataset_options,
                                           value=defaults["dataset"], clearable=False), help_key="dataset"),
            _field("Task(s)", dcc.Dropdown(id="tasks", multi=True, options=task_options,
                                           value=defaults["tasks"]), help_key="tasks"),
            _field("Questions per task", dcc.Input(id="n-questions", persistence=True, persistence_type="session", type="number", min=1, step=1,
                                                   value=defaults["n_questions"], className="input"),
                   help_key="n-questions"),
            _field("Language pooling", dcc.RadioItems(id="pooling", persistence=True, persistence_type="session", inline=True, value=defaults[
                "language_pooling"], options=[{"label": " mean", "value": "mean"},
                                                      {"label": " last token", "value": "last"}]),
                   help_key="pooling"),
            _field("Target Y", dcc.RadioItems(id="target", persistence=True, persistence_type="session", inline=True, value=defaults["target"],
                                              options=[{"label": " answer log-probs", "value": "logprobs"},
                                                       {"label": " final hidden state", "value": "hidden"}]),
                   help_key="target"),
            _field("Estimator", dcc.RadioItems(id="measure", persistence=True, persistence_type="session", inline=True, value=defaults["measure"],
                                               options=[{"label": " BROJA", "value": "broja"},
                                                        {"label": " MMI", "value": "mmi"}]),
                   help_key="measure"),
            _field("PCA sizes (vision, language, target)", html.Div(className="dims", children=[
                dcc.Input(id=f"dim-{name}", persistence=True, persistence_type="session", type="number", min=1, step=1, value=value, className="input small")
                for name, value in zip(("vision", "language", "target"), defaults["dims"], strict=True)]),
                   help_key="dims"),
            _field("Gaussianization", html.Div([
                dcc.Dropdown(id="gaussianize", persistence=True, persistence_type="session", value=defaults["gaussianize"], clearable=False, options=[
                    {"label": "auto (copula, flows if they fit better)", "value": "auto"},
                    {"label": "copula (normal scores per coordinate)", "value": "copula"},
                    {"label": "joint flows (after the copula)", "value": "flow"},
                    {"label": "none (PCA only)", "value": "none"}]),
                html.Div("Invertible per-variable maps that make the data Gaussian before the closed-form PID; "
                         "auto picks by held-out likelihood.", className="hint")]), help_key="gaussianize"),
            _field("Bootstrap resamples (for confidence bands)", dcc.Input(
                id="bootstrap", persistence=True, persistence_type="session", type="number", min=0, step=1, value=defaults["bootstrap"], className="input"),
                   help_key="bootstrap"),
        ]),
        html.Fieldset(className="knockout", children=[
            html.Legend(["Attention knockout (optional) ", help_mark(OPTION_HELP["knockout"])]),
            dcc.Checklist(id="ko-edges", persistence=True, persistence_type="session", inline=True, value=[], options=edge_options(first_model)),
            html.Div("Decoder layers knocked out:", className="field-label"),
            html.Div(id="knockout-error", className="field-error", role="alert"),
            dcc.RangeSlider(id="ko-layers", min=0, max=num_layers - 1, step=1,
                            value=[0, num_layers - 1], marks=layer_marks(num_layers),
                            tooltip={"placement": "bottom", "always_visible": False}, allow_direct_input=False),
            html.Div(id="ko-window", className="hint"),
        ]),
        token_field,
        html.Div(id="estimate", className="estimate", role="status"),
        html.Div(className="actions", children=[
            html.Button("Run analysis", id="submit", n_clicks=0, className="primary"),
            html.Button("Cancel", id="cancel", n_clicks=0, hidden=True, className="cancel"),
        ]),
    ])


DROPZONE_STYLE = {"border": "2px dashed #8a94a6", "borderRadius": "8px", "padding": "22px", "textAlign": "center",
                  "cursor": "pointer"}


def size_text(size: int) -> str:
    """Bytes for people: 256 MiB, 977 KiB, 512 bytes (binary units, 3 significant digits)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def too_large_template(limit: int) -> str:
    """The drop zone's message for a file over `limit` bytes; static/upload-limit.js fills {name} and {size}
    (the browser refuses such a file before reading it: dcc.Upload's max_size)."""
    return (f"Cannot analyse {{name}}: it is {{size}}, more than this server accepts for a features file "
            f"({size_text(limit)}, PIDFLOW_MAX_UPLOAD_BYTES). Select fewer questions or layers, or analyse it "
            f"locally: pidflow analyze --features FILE.")


def features_upload_panel(limit: int | None = None) -> html.Div:
    """Drop zone for a pooled-features file (bring your own activations); analysed with the estimator
    settings of the form above (PCA sizes, estimator, Gaussianization, bootstrap). A file over `limit`
    bytes is refused in the browser with a message saying the limit."""
    upload = dcc.Upload(id="features-upload", multiple=False, style=DROPZONE_STYLE, className="dropzone",
                        max_size=limit or -1,
                        children=html.Div(["Drag and drop a features file here, or ", html.A("choose a file"),
                                           *([f" (up to {size_text(limit)})"] if limit else [])]))
    guarded = html.Div(upload, **({"data-max-bytes": str(limit), "data-too-large": too_large_template(limit),
                                   "data-message": "features-summary"} if limit else {}))
    return html.Div(className="panel form", id="features-panel", children=[
        html.H2("Or analyse your own activations"),
        html.P(["A pooled-features file (npz, safetensors or .pt) with per-layer vision and language states and "
                "the target, as written by pidcore.write_features from activations cached with nnsight, "
                "TransformerLens or vLLM (docs/features-format.md). It is analysed with the PCA sizes, "
                "estimator, Gaussianization and bootstrap set above."], className="hint"),
        guarded,
        html.Div(id="features-summary", role="status", className="status"),
    ])


def results_panel(shown: dict | None = None) -> html.Div:
    """The Results tab; `shown`: an analysis's tab already rendered (callbacks.rendered_results), so the
    first view draws its plots without waiting for a callback."""
    shown = shown or {}
    return html.Div(id="results", className="panel", children=[
        html.Div(className="results-head", children=[
            html.Div([html.H2("Results"), html.Div(shown.get("summary"), id="result-summary", className="summary")]),
            html.Div(className="toolbar", children=[
                help_mark(OPTION_HELP["mode"]),
                dcc.RadioItems(id="mode", inline=True, value="bits",
                               options=[{"label": " bits", "value": "bits"},
                                        {"label": " fraction of total", "value": "fraction"}]),
                html.Span("Plot download:", className="field-label inline"),
                dcc.RadioItems(id="plot-format", inline=True, value="png",
                               options=[{"label": f" {f.upper()}", "value": f} for f in PLOT_FORMATS]),
                html.Button("Data CSV", id="download-csv-button", n_clicks=0),
                html.Button("Data JSON", id="download-json-button", n_clicks=0),
                dcc.Download(id="download"),
            ]),
        ]),
        html.Div(shown.get("story"), id="demo-story", className="story", hidden=shown.get("story_hidden", True)),
        html.Div(id="result-message", role="alert", className="message"),
        html.Div(shown.get("notes"), id="result-notes", className="notes"),
        html.Div(id="run-columns", className=shown.get("columns", "two-columns"), children=[
            plot_block("stacked-baseline", shown=shown),
            plot_block("stacked-knockout", shown.get("knockout_hidden", False), shown)]),
        plot_block("difference", shown.get("difference_hidden", False), shown),
        glossary(),
        html.Div(shown.get("effects"), id="effects", className="effects"),
        html.Div(id="share-box", className="share", children=[
            html.H3("Share"),
            html.Button("Create read-only link", id="share-button", n_clicks=0),
            html.Div(className="compare-row", children=[
                dcc.Input(id="share-link", type="text", readOnly=True, className="input wide",
                          placeholder="a link appears here"),
                dcc.Clipboard(target_id="share-link", title="copy the link", className="clipboard"),
            ]),
        ]),
    ])


COMPARE_RUNS = [{"label": " baseline", "value": "baseline"}, {"label": " knockout", "value": "knockout"}]


def compare_panel() -> html.Div:
    """Overlays: tasks of this analysis, and another analysis (model or task) with correlations."""
    return html.Div(id="compare", className="panel", children=[
        html.H2("Compare"),
        html.H3("Compare tasks"),
        dcc.RadioItems(id="task-term", inline=True, value="total",
                       options=[{"label": " total", "value": "total"}, {"label": " R", "value": "redundancy"},
                                {"label": " U_vision", "value": "unique_vision"},
                                {"label": " U_language", "value": "unique_language"},
                                {"label": " S", "value": "synergy"}]),
        graph("task-overlay"),
        html.H3("Compare with another analysis (another model or task)"),
        dcc.Dropdown(id="compare-recent", placeholder="pick an analysis this browser opened before",
                     className="compare-recent", searchable=True),
        html.Div(className="compare-row", children=[
            dcc.Input(id="compare-id", type="text", placeholder="or paste an analysis id or a dashboard link",
                      className="input wide", debounce=True),
            html.Button("Overlay", id="compare-button", n_clicks=0),
        ]),
        html.Div(className="compare-row", children=[  # which run each trace draws (the legend names it)
            html.Span("Draw this analysis's "),
            dcc.RadioItems(id="compare-run-this", inline=True, value="baseline", options=COMPARE_RUNS),
            html.Span(" against the other's "),
            dcc.RadioItems(id="compare-run-other", inline=True, value="baseline", options=COMPARE_RUNS),
        ]),
        html.Div(id="compare-message", role="alert", className="message"),
        graph("comparison"),
        html.Div(id="correlations", className="effects"),
    ])


def questions_panel() -> html.Div:
    return html.Div(id="questions", className="panel", children=[
        html.H2("Question explorer"),
        html.Div(className="form-grid", children=[
            _field("Search", dcc.Input(id="question-search", type="search", placeholder="words in question or answer",
                                       className="input", debounce=True)),
            _field("Task", dcc.Dropdown(id="question-task", placeholder="all tasks")),
            _field("Baseline answer", dcc.RadioItems(id="question-correct", inline=True, value="all", options=[
                {"label": " all", "value": "all"}, {"label": " correct", "value": "correct"},
                {"label": " incorrect", "value": "incorrect"}])),
        ]),
        _field("Question", dcc.Dropdown(id="question-pick", placeholder="pick a question", optionHeight=40)),
        html.Div(id="question-count", className="hint"),
        html.Div(id="question-view", className="question-view",
                 children=html.Div("Pick a question to see its image, answers and decomposition.", className="hint")),
        graph("question-figure"),
        html.P("Per-question (pointwise) terms: this question's contribution to each part, in bits. They are "
               "noisy one by one and can be negative; their mean over the questions is the analysis's value.",
               className="caption"),
        attention_panel(),
        own_question_panel(),
    ])


def attention_panel() -> html.Div:
    """Where in the image: attention from the question tokens or the last position to the image patches."""
    return html.Div(id="attention-panel", className="attention", children=[
        html.H3(["Where in the image ", help_mark(
            "Attention probabilities from the question's tokens (their mean) or from the last position to each "
            "image patch, in one decoder layer; computed for the demo model")]),
        html.Div(className="toolbar", children=[
            dcc.RadioItems(id="att-source", inline=True, value="question", options=[
                {"label": " from the question tokens", "value": "question"},
                {"label": " from the last position", "value": "last"}]),
            dcc.Dropdown(id="att-head", value="mean", clearable=False, className="att-head",
                         options=[{"label": "mean over heads", "value": "mean"}]),
        ]),
        html.Div("Decoder layer:", className="field-label"),
        dcc.Slider(id="att-layer", min=0, max=DEFAULT_LAYERS - 1, step=1, value=0, marks=None,
                   tooltip={"placement": "bottom", "always_visible": True}),
        html.Div(id="att-message", className="hint"),
        html.Div(id="att-columns", className="two-columns", children=[
            html.Div(graph("attention-baseline"), className="plot-block"),
            html.Div(graph("attention-knockout"), id="attention-knockout-block", className="plot-block")]),
    ])


def own_question_panel() -> html.Div:
    """Try your own image and question on the demo model."""
    return html.Div(id="own-question", className="own-question", children=[
        html.H3("Try your own image and question (demo model)"),
        html.Div(className="compare-row", children=[
            dcc.Upload(id="own-image", className="own-upload", accept="image/*", max_size=2_000_000,
                       children=html.Div(["Drop an image here or ", html.A("choose one")])),
            dcc.Input(id="own-text", type="text", className="input wide", debounce=False,
                      placeholder="e.g. what color is the shape?"),
            html.Button("Ask the demo model", id="own-ask", n_clicks=0),
        ]),
        html.Div(id="own-answer", role="status", className="own-answer"),
        graph("own-attention"),
        dcc.Loading(type="dot", children=[  # placing the question refits the pipeline: seconds
            html.Div(id="own-terms-note", role="status", className="hint"),
            html.Div(graph("own-terms"), id="own-terms-block", className="plot-block", hidden=True)]),
    ])


#: The Studies form's fields whose refusals show next to them (study-<name>-error); runs: the cut, the
#: sweep and the fixed windows together.
STUDY_FORM_FIELDS = ("models", "dataset", "tasks", "runs", "recipes", "n-questions", "dims", "gaussianize",
                     "bootstrap")
RECIPE_CHOICES = {"both": ("pidflow", "seed"), "pidflow": ("pidflow",), "seed": ("seed",)}


def _study_field(label: str, control, name: str, hint: str | None = None) -> html.Div:
    children = [html.Label(label, className="field-label"), control,
                html.Div(id=f"study-{name}-error", className="field-error", role="alert")]
    if hint:
        children.append(html.Div(hint, className="hint"))
    return html.Div(children, className="field")


def task_choices(dataset: dict | None) -> list[dict]:
    """The Studies form's task options: "all" then the dataset's tasks."""
    names = [t if isinstance(t, str) else t.get("name") for t in (dataset or {}).get("tasks", [])]
    return [{"label": "all tasks", "value": "all"}, *({"label": name, "value": name} for name in names)]


def study_form(models: list[dict], datasets: list[dict], hosted: bool) -> html.Div:
    """Start a study: models x tasks x runs x recipes, filled with the API's defaults (pidcore.study.run)."""
    from pidcore.study.run import StudyRequest

    defaults = StudyRequest()
    model_options = [{"label": model_label(m), "value": m["name"]} for m in models] or \
        [{"label": "demo", "value": "demo"}]
    names = [option["value"] for option in model_options]
    chosen = [m for m in defaults.models if m in names] or names[:1]
    dataset = next((d for d in datasets if d.get("name") == defaults.dataset), {})
    dataset_options = [{"label": d.get("name") + (" (not configured on this server)" if d.get("unavailable") else ""),
                        "value": d.get("name")} for d in datasets] or [{"label": defaults.dataset,
                                                                          "value": defaults.dataset}]
    sweep = defaults.sweep or {"edges": ["image->question"], "k": 9}
    recipe = next(name for name, recipes in RECIPE_CHOICES.items() if recipes == tuple(defaults.recipes))
    token = _study_field("API token", dcc.Input(id="study-token", type="password", className="input",
                                                placeholder="required on this server"), "token",
                         "This server is hosted: starting a study needs an API token.") if hosted else \
        html.Div(dcc.Input(id="study-token", type="hidden", value=""), hidden=True)
    return html.Div(id="study-form-box", className="study-form", children=[
        html.H3("Start a study"),
        html.Div(className="form-grid", children=[
            _study_field("Models", dcc.Dropdown(id="study-models", multi=True, options=model_options, value=chosen),
                         "models"),
            _study_field("Dataset", dcc.Dropdown(id="study-dataset", options=dataset_options, value=defaults.dataset,
                                                 clearable=False), "dataset"),
            _study_field("Tasks", dcc.Dropdown(id="study-tasks", multi=True, options=task_choices(dataset),
                                               value=list(defaults.tasks)), "tasks", "\"all tasks\": every task of the dataset"),
            _study_field("Recipes", dcc.RadioItems(id="study-recipes", inline=True, value=recipe, options=[
                {"label": " pidflow's default", "value": "pidflow"},
                {"label": " the seed's (PCA 95%, MMI)", "value": "seed"},
                {"label": " both, side by side", "value": "both"}]), "recipes"),
            _study_field("Questions per task", dcc.Input(id="study-n-questions", type="number", min=1, step=1,
                                                         value=defaults.n_questions, className="input"), "n-questions"),
            _study_field("PCA sizes (vision, language, target)", html.Div(className="dims", children=[
                dcc.Input(id=f"study-dim-{name}", type="number", min=1, step=1, value=value, className="input small")
                for name, value in zip(("vision", "language", "target"), defaults.dims, strict=True)]), "dims"),
            _study_field("Gaussianization", dcc.Dropdown(id="study-gaussianize", value=defaults.gaussianize,
                                                         clearable=False, options=[
                {"label": "auto (copula, flows if they fit better)", "value": "auto"},
                {"label": "copula (normal scores per coordinate)", "value": "copula"},
                {"label": "joint flows (after the copula)", "value": "flow"},
                {"label": "none (PCA only)", "value": "none"}]), "gaussianize"),
            _study_field("Bootstrap resamples", dcc.Input(id="study-bootstrap", type="number", min=0, step=1,
                                                          value=defaults.bootstrap, className="input"), "bootstrap"),
        ]),
        html.Fieldset(className="knockout study-runs", children=[
            html.Legend("Runs: the baseline always, and"),
            dcc.Checklist(id="study-seed-cut", value=["on"] if defaults.seed_cut else [], options=[
                {"label": " the seed's image->question cut (every decoder layer)", "value": "on"}]),
            html.Div(className="compare-row", children=[
                dcc.Checklist(id="study-sweep", value=["on"] if defaults.sweep else [], inline=True, options=[
                    {"label": " a sweep of k-layer windows centred on every layer, k =", "value": "on"}]),
                dcc.Input(id="study-sweep-k", type="number", min=1, step=1, value=sweep["k"], className="input small"),
            ]),
            html.Div(className="compare-row", children=[
                html.Label("Fixed windows (decoder layers):", className="field-label"),
                dcc.Input(id="study-windows", type="text", placeholder="optional, e.g. 0-4, 10-14",
                          className="input", value=""),
            ]),
            html.Div("Edges cut by the sweep and the fixed windows:", className="field-label"),
            dcc.Checklist(id="study-edges", inline=True, value=list(sweep["edges"]),
                          options=[{"label": f" {edge}", "value": edge} for edge in KNOCKOUT_EDGES]),
            html.Div(id="study-runs-error", className="field-error", role="alert"),
        ]),
        token,
        html.Div(className="actions", children=[html.Button("Start study", id="study-submit", n_clicks=0,
                                                            className="primary")]),
        html.Div(id="study-start-status", role="status", className="status"),
    ])


def studies_panel(hosted: bool, models: list[dict] | None = None, datasets: list[dict] | None = None) -> html.Div:
    """Studies (the seed paper's whole experiment as one request): start one (models x tasks x runs x
    recipes), open one by id or link, list the server's (open servers), and go to its page (small
    multiples, sweep heatmap, exports)."""
    listing = [html.H3("Studies on this server"),
               html.Button("Refresh", id="study-refresh", n_clicks=0),
               html.Div(id="study-list", className="study-list")]
    if hosted:  # a hosted server lists none: each study is read through its submitter's handle
        listing = [html.Div(id="study-list", hidden=True), html.Button(id="study-refresh", hidden=True)]
    return html.Div(id="studies", className="panel", children=[
        html.H2("Studies"),
        html.P(["A study runs models x tasks x runs (the baseline, knockout windows, the image->question cut and a "
                "sweep of windows centred on every layer) with pidflow's recipe and the seed's, as one request: "
                "this form, ", html.Code("pidflow study"), " or ", html.Code("POST /api/v1/studies"),
                " (docs/study.md). Its page shows the headline table, small multiples per model x task, the "
                "knockout-sweep heatmap and JSON / CSV / HTML exports."], className="hint"),
        dcc.Store(id="study-form-error"),  # [{field, message}, ...] of a refused start
        dcc.Store(id="study-started"),  # the id (hosted: handle) of the study the form started
        dcc.Interval(id="study-poll", interval=1000, disabled=True),  # follows the open study until it ends
        study_form(models or [], datasets or [], hosted),
        html.H3("Open a study"),
        html.Div(className="compare-row", children=[
            dcc.Input(id="study-id", type="text", placeholder="a study id or its page link", className="input wide",
                      debounce=True),
            html.Button("Open", id="study-open", n_clicks=0),
        ]),
        html.Div(id="study-view", role="status", className="study-view"),
        html.Div(className="actions", children=[
            html.Button("Cancel study", id="study-cancel", n_clicks=0, hidden=True, className="danger",
                        title="stop its queued and running parts; the parts that finished stay"),
            html.Span(id="study-cancel-status", role="status", className="status")]),
        *listing,
    ])


ANALYSES_PAGE = 10  # rows per page of the Analyses tab


def analyses_panel(hosted: bool) -> html.Div:
    """The server's list of analyses: search, table (filled by app/ui/analyses_callbacks.py), pager, and the
    confirm dialog of Delete."""
    whose = "The analyses started with the API token entered under New analysis (each token sees only its own)." \
        if hosted else "Every analysis this server keeps, newest first (open mode: anyone may open or delete them)."
    return html.Div(id="analyses", className="panel", children=[
        html.H2("Analyses on this server"),
        html.P(whose, className="hint"),
        html.Div(className="compare-row", children=[
            dcc.Input(id="analyses-search", type="search", className="input wide", debounce=True,
                      placeholder="search: model, task, id or words such as knockout, mmi, failed, 2026-12-01"),
            html.Button("Refresh", id="analyses-refresh", n_clicks=0),
        ]),
        html.Div(id="analyses-message", role="status", className="status"),
        html.Div(id="analyses-table", className="analyses-table"),
        html.Div(className="pager", children=[
            html.Button("Previous", id="analyses-prev", n_clicks=0, disabled=True),
            html.Span(id="analyses-range", className="hint"),
            html.Button("Next", id="analyses-next", n_clicks=0, disabled=True),
        ]),
        dcc.Store(id="analyses-offset", data=0),
        dcc.Store(id="analyses-total", data=0),
        dcc.Store(id="analyses-changed", data=0),  # bumped by a delete: the table is read again
        dcc.Store(id="analyses-delete-target"),
        dcc.ConfirmDialog(id="analyses-confirm"),
    ])


def _knockout_text(knockout: dict | None) -> str:
    if not knockout:
        return "none"
    layers = knockout.get("layers") or []
    window = f" in layers {layers[0]}-{layers[1]}" if len(layers) == 2 else ""
    return ", ".join(knockout.get("edges") or []) + window


def _state_text(item: dict) -> str:
    state = item.get("state") or "?"
    if state in ("queued", "running"):
        return f"{state} ({int(round(100 * float(item.get('progress') or 0)))} %)"
    return state


def analyses_table(items: list[dict], open_id: str | None = None, demo_id: str | None = None) -> html.Table | html.Div:
    """One row per listed analysis: id (marked when it is the one open or the demo), model, task(s), knockout,
    status, created (UTC), Re-open (a link to its deep-link URL) and Delete (asks to confirm)."""
    import time

    if not items:
        return html.Div("No analyses to list.", className="hint")
    rows = []
    for item in items:
        aid = item["id"]
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(item["created_at"]))) \
            if item.get("created_at") else ""
        tasks = ", ".join(item.get("tasks") or []) or "?"
        if item.get("n_questions"):
            tasks += f" ({item['n_questions']} q)"
        marks = [html.Span(word, className="tag") for word, hit in (("open", aid == open_id), ("demo", aid == demo_id))
                 if hit]
        rows.append(html.Tr(className=f"analysis-row state-{item.get('state')}" + (" is-open" if aid == open_id else ""),
                            children=[
            html.Td([html.Code(aid[:12], title=aid), *marks], className="analysis-id"),
            html.Td(item.get("model") or "?"), html.Td(tasks), html.Td(_knockout_text(item.get("knockout"))),
            html.Td(_state_text(item), title=item.get("error") or item.get("message") or "", className="state"),
            html.Td(created),
            html.Td(className="row-actions", children=[
                dcc.Link("Re-open", href=f"?analysis={aid}&tab=results", className="button reopen"),
                html.Button("Delete", id={"type": "analysis-delete", "index": aid}, n_clicks=0,
                            className="danger"),
            ]),
        ]))
    head = html.Thead(html.Tr([html.Th(name) for name in
                               ("id", "model", "task(s)", "knockout", "status", "created (UTC)", "")]))
    return html.Table(className="metrics analyses", children=[head, html.Tbody(rows)])


def build_layout(models: list[dict], datasets: list[dict], hosted: bool, defaults: dict,
                 initial: dict | None = None, upload_limit: int | None = None) -> html.Div:
    """The whole page. Stores: analysis-id (shown), pending-id (polled), read-only flag, and the analyses
    this browser opened (recent-analyses, kept in the browser's local storage). `upload_limit`: the most
    bytes of a features file (PIDFLOW_MAX_UPLOAD_BYTES)."""
    return html.Div(className="page", children=[
        dcc.Location(id="url", refresh=False),  # read: the view asked for (load, back, forward)
        dcc.Location(id="url-write", refresh="callback-nav"),  # written: the view shown (tells `url` too)
        dcc.Store(id="analysis-id", data=(initial or {}).get("analysis")),  # a finished analysis the URL names
        dcc.Store(id="recent-analyses", storage_type="local"),
        dcc.Store(id="pending-id"),
        dcc.Store(id="form-error"),  # {field, message} of a refused submit
        dcc.Store(id="form-check"),  # {field, message} of the live check of the form
        dcc.Store(id="read-only", data=False),
        html.Header(className="header", children=[
            html.H1("pidflow"),
            html.Span("Partial Information Decomposition across the layers of vision-language models",
                      className="tagline"),
            html.Span(id="read-only-banner", className="banner", hidden=True,
                      children="Read-only shared view"),
        ]),
        html.Div(className="status-bar", children=[
            html.Div(id="submit-status", role="status", className="status"),
            html.Progress(id="progress", max=1, value=0, hidden=True),
            dcc.Interval(id="poll", interval=700, disabled=True),
        ]),
        dcc.Tabs(id="tabs", value=(initial or {}).get("tab", "new"), className="tabs", children=[
            dcc.Tab(label="New analysis", value="new", id="tab-new",
                    children=[new_analysis_form(models, datasets, hosted, defaults),
                              features_upload_panel(upload_limit)]),
            dcc.Tab(label="Results", value="results", children=results_panel((initial or {}).get("results"))),
            dcc.Tab(label="Compare", value="compare", children=compare_panel()),
            dcc.Tab(label="Questions", value="questions", children=questions_panel()),
            dcc.Tab(label="Studies", value="studies", children=studies_panel(hosted, models, datasets)),
            dcc.Tab(label="Analyses", value="analyses", id="tab-analyses", children=analyses_panel(hosted)),
        ]),
    ])
