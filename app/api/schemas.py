"""Request and response models of the REST API (they shape the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.service import DEFAULT_REQUEST
from pidcore.pipeline.validation import MAX_SEED

TaskName = Annotated[str, Field(min_length=1)]
Dim = Annotated[int, Field(ge=1)]

KnockoutEdge = Literal["image->question", "image->last", "question->last", "last->last", "question->image"]


class KnockoutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edges: list[KnockoutEdge] = Field(min_length=1, description="attention edges to cut")
    layers: list[Annotated[int, Field(ge=0)]] = Field(min_length=2, max_length=2, description="[first, last] decoder layers, inclusive")


class AnalysisRequestBody(BaseModel):
    """The body of POST /analyses (see docs/architecture.md, AnalysisRequest); defaults: DEFAULT_REQUEST."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(DEFAULT_REQUEST["model"], description="a configured model (GET /models)")
    dataset: str = Field(DEFAULT_REQUEST["dataset"], description="a dataset of GET /datasets")
    tasks: list[TaskName] = Field(default_factory=lambda: list(DEFAULT_REQUEST["tasks"]), min_length=1,
                                  description="task names of the dataset (at most PIDFLOW_MAX_TASKS)")
    split: str = DEFAULT_REQUEST["split"]
    n_questions: int = Field(DEFAULT_REQUEST["n_questions"], ge=1, description="questions per task (bounded by PIDFLOW_MAX_QUESTIONS)")
    correct_only: bool = DEFAULT_REQUEST["correct_only"]
    language_pooling: Literal["mean", "last"] = DEFAULT_REQUEST["language_pooling"]
    target: Literal["logprobs", "hidden"] = DEFAULT_REQUEST["target"]
    measure: Literal["broja", "mmi"] = DEFAULT_REQUEST["measure"]
    dims: list[Dim] = Field(default_factory=lambda: list(DEFAULT_REQUEST["dims"]), min_length=3, max_length=3,
                            description="PCA sizes for vision, language, target (each at most PIDFLOW_MAX_DIM)")
    gaussianize: Literal["auto", "none", "copula", "flow"] | bool = Field(
        DEFAULT_REQUEST["gaussianize"],
        description="auto (default: per variable the copula where its high-variance features are non-Gaussian, "
                    "plus joint flows only where the latents stay jointly non-Gaussian and the flows win on held-out "
                    "likelihood; decided once per analysis and recorded in the result), none (PCA only), copula (per-coordinate normal scores, then PCA), flow (copula, PCA, then joint flows); "
                    "true/false of older clients mean auto/none")
    bootstrap: int = Field(DEFAULT_REQUEST["bootstrap"], ge=0,
                           description="bootstrap rounds of the 95% intervals (paired between runs), 0 for none (at most "
                                       "PIDFLOW_MAX_BOOTSTRAP)")
    estimator: Literal["corrected", "plugin"] = Field(
        DEFAULT_REQUEST["estimator"],
        description="corrected (default): bias-corrected parts (exact Wishart correction of each mutual information, "
                    "simulated correction of the union information); plugin: the uncorrected plug-in estimate, "
                    "biased upward at small samples")
    knockout: KnockoutSpec | None = None
    knockout_target: Literal["baseline", "own"] = Field(
        DEFAULT_REQUEST["knockout_target"],
        description="the target Y of the knockout run: the baseline's (default; layers before the window then have "
                    "a delta of exactly 0) or the knockout run's own answer distribution")
    seed: int = Field(DEFAULT_REQUEST["seed"], ge=0, le=MAX_SEED)
    reduce_first: bool = Field(
        False, description="PCA of the raw features before the marginal Gaussianization (the seed-faithful "
                           "recipe's order; default false: Gaussianize each feature, then PCA)")


class JobStatus(BaseModel):
    """An analysis job; `progress` is 0..1."""

    model_config = ConfigDict(extra="allow")
    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    stage: str | None = None
    progress: float = 0.0
    message: str | None = None
    error: str | None = None
    cached: bool = False
    status_url: str
    result_url: str


class ShareLink(BaseModel):
    share_token: str
    url: str = Field(description="read-only API address of the shared analysis")
    ui_url: str = Field(description="dashboard address that opens the shared analysis")
    created_at: float = Field(description="epoch seconds")
    expires_at: float = Field(description="epoch seconds; PIDFLOW_SHARE_TTL_S after creation")


class ListedAnalysis(JobStatus):
    """An analysis of `GET /analyses`: its status and what it asked for."""

    created_at: float | None = Field(None, description="epoch seconds")
    model: str | None = None
    dataset: str | None = None
    tasks: list[str] | None = None
    n_questions: int | None = None
    measure: str | None = None
    target: str | None = None
    knockout: dict | None = Field(None, description="{edges, layers} or null for a baseline-only analysis")


class AnalysisPage(BaseModel):
    """One page of `GET /analyses`, newest first; with `q`, `total` counts the matches."""

    total: int
    offset: int
    limit: int
    items: list[ListedAnalysis]


class Health(BaseModel):
    ok: bool
    redis: bool
    workers: int | None = Field(description="live workers (Redis heartbeats, busy ones included); null when unknown")
    lost_tasks: int | None = Field(None, description="tasks whose worker died (heartbeat expired) and that no worker "
                                                     "has taken up again yet; null when unknown")


class ErrorItem(BaseModel):
    field: str | None = Field(None, description="the request field it is about (dotted), when one is")
    message: str


class Message(BaseModel):
    """The shape of every error answer."""

    detail: str = Field(description="what went wrong and, where it can, what to change")
    errors: list[ErrorItem] | None = Field(None, description="one entry per problem, with its field")


class LayerEntry(BaseModel):
    """One layer of one run (bits)."""

    model_config = ConfigDict(extra="allow")
    layer: int = Field(description="0 = embeddings, l = after decoder layer l - 1")
    redundancy: float
    unique_vision: float
    unique_language: float
    synergy: float
    total: float
    ci: dict[str, list[float | None] | None] | None = Field(None, description="term -> [low, high] (bits)")
    warnings: list[str] | None = None
    gaussianization: str | None = Field(None, description="the Gaussianization used: none, copula, flow, or per "
                                                           "variable (e.g. 'x1 copula, x2 none, y copula')")


class RunResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    layers: list[LayerEntry]
    accuracy: float | None = None
    mean_p_correct: float | None = None


class Runs(BaseModel):
    model_config = ConfigDict(extra="allow")
    baseline: RunResult
    knockout: RunResult | None = None


class ResultDocument(BaseModel):
    """The result document, schema pidflow.result/1 (docs/architecture.md). `pointwise[run]` is indexed
    [question][layer][term] in the order of `questions` and terms (redundancy, unique_vision,
    unique_language, synergy), bits; `pointwise_axes` and `pointwise_terms` label it."""

    model_config = ConfigDict(extra="allow")
    schema_: str = Field(alias="schema", description="pidflow.result/1")
    request: dict
    model: dict | None = None
    n_questions: int | None = None
    runs: Runs
    effects: dict | None = None
    questions: list[dict] | None = None
    pointwise: dict[str, list[list[list[float | None]]] | None] | None = None
    pointwise_axes: list[str] | None = None
    pointwise_terms: list[str] | None = None


class Deleted(BaseModel):
    """The answer of a DELETE of an analysis or of an uploaded features file."""

    id: str
    deleted: bool = Field(description="false when there was nothing left to delete")


class Revoked(BaseModel):
    share_token: str
    revoked: bool


class PointwiseLayer(BaseModel):
    """One layer of one question's pointwise decomposition (bits; noisy per question)."""

    layer: int
    redundancy: float | None = None
    unique_vision: float | None = None
    unique_language: float | None = None
    synergy: float | None = None
    total: float | None = None


class QuestionRun(BaseModel):
    """What one run did with one question, and its pointwise terms per layer."""

    model_config = ConfigDict(extra="allow")
    predicted: str | None = None
    p_correct: float | None = None
    correct: bool | None = None
    layers: list[PointwiseLayer]


class QuestionView(BaseModel):
    """One question of an analysis: texts, answers, image and the pointwise PID of each run."""

    model_config = ConfigDict(extra="allow")
    qid: str
    task: str | None = None
    question: str | None = None
    answer: str | None = None
    image_id: str | None = None
    image_url: str | None = Field(None, description="GET it for the question's PNG")
    baseline: QuestionRun | None = None
    knockout: QuestionRun | None = Field(None, description="null without a knockout")


class AttentionView(BaseModel):
    """Attention of one question to its image patches per decoder layer: `baseline` (and `knockout`) are
    {grid: [rows, cols], heads, layers: [{decoder_layer, question, last, question_heads, last_heads}], share,
    answer}."""

    model_config = ConfigDict(extra="allow")
    qid: str
    question: str
    image_url: str
    baseline: dict
    knockout: dict | None = None


class FeaturesSummary(BaseModel):
    """An uploaded features file: sizes, tasks and `request`, the AnalysisRequest that analyses all of it
    (POST it to /analyses, with any options changed)."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(pattern=r"^([0-9a-f]{64}|u[0-9a-f]{32})$",
                    description="the id to read and delete it by (GET/DELETE /features/{id}): in hosted mode this "
                                "token's own handle of the file (`u` + 32 hex digits, the same on its re-uploads; "
                                "another token uploading the same bytes gets another), in open mode the file's "
                                "sha256; a GET by sha256 answers with that id")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="the file's sha256: what names the file itself (`model` features:<sha256>)")
    stored_bytes: int | None = Field(None, ge=0,
                                     description="bytes its layer files take once stored: what it counts against "
                                                 "PIDFLOW_FEATURE_MAX_GB and, in hosted mode, against each holding "
                                                 "token's PIDFLOW_UPLOAD_QUOTA_GB (null for files uploaded before "
                                                 "it was recorded)")
    model: str = Field(description="features:<sha256>, the `model` of its analyses")
    format: str | None = None
    n_questions: int
    num_layers: int = Field(description="layers in the file (embeddings included)")
    vision_dim: int
    language_dim: int
    target_dim: int
    tasks: dict[str, int] = Field(description="task -> questions")
    answers_known: bool
    images: bool
    source_model: str | None = None
    language_pooling: Literal["mean", "last"]
    target: Literal["logprobs", "hidden"]
    knockout: dict | None = Field(None, description="{edges, layers} of the file's knockout run, or null")
    request: AnalysisRequestBody


class FeaturesUpload(FeaturesSummary):
    """The answer of POST /features: the summary, and whether this upload stored the file."""

    created: bool = Field(description="false when the same bytes were uploaded before (answered 200)")


class UnmaskableLayer(BaseModel):
    layer: int
    kind: str


class ModelInfo(BaseModel):
    """A configured model with what pidflow knows of it from its local config (absent when not on the
    server)."""

    model_config = ConfigDict(extra="allow")
    name: str
    num_layers: int | None = Field(None, description="decoder layers, null when unknown here")
    family: str | None = None
    model_type: str | None = None
    attention: str | None = None
    vision_source: str | None = None
    knockout_edges: list[str] | None = None
    linear_attention_layers: list[int] | None = None
    unmaskable_layers: list[UnmaskableLayer] | None = None
    cross_attention_layers: list[int] | None = None
    unsupported: str | None = None


class TaskInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None
    splits: list[str] | None = None
    tasks: list[TaskInfo]


# -- studies ------------------------------------------------------------------------------------------------

RecipeName = Literal["pidflow", "seed"]
ModelName = Annotated[str, Field(min_length=1, pattern=r"\S")]


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edges: list[KnockoutEdge] = Field(min_length=1, description="attention edges to cut")
    k: int = Field(ge=1, description="window width in decoder layers, centred on every decoder layer")


class StudyRequestBody(BaseModel):
    """The body of POST /studies (pidcore.study.run.StudyRequest; docs/study.md): models x tasks x runs x
    recipes. The fields an analysis has mean the same and have the same bounds."""

    model_config = ConfigDict(extra="forbid")
    models: list[ModelName] = Field(default_factory=lambda: ["demo"], min_length=1,
                                    description="configured models (GET /models)")
    dataset: str = Field(DEFAULT_REQUEST["dataset"], description="a dataset of GET /datasets")
    tasks: list[ModelName] = Field(default_factory=lambda: list(DEFAULT_REQUEST["tasks"]), min_length=1,
                                   description="task names of the dataset (at most PIDFLOW_MAX_TASKS)")
    split: str = DEFAULT_REQUEST["split"]
    n_questions: int = Field(DEFAULT_REQUEST["n_questions"], ge=1,
                             description="questions per task (bounded by PIDFLOW_MAX_QUESTIONS)")
    correct_only: bool = DEFAULT_REQUEST["correct_only"]
    language_pooling: Literal["mean", "last"] = DEFAULT_REQUEST["language_pooling"]
    target: Literal["logprobs", "hidden"] = DEFAULT_REQUEST["target"]
    knockouts: list[KnockoutSpec] = Field(default_factory=list, description="fixed knockout windows (at most 16)")
    seed_cut: bool = Field(True, description="the seed's image->question cut in every decoder layer")
    sweep: SweepSpec | None = Field(default_factory=lambda: {"edges": ["image->question"], "k": 9},
                                    description="a k-layer window slid over the depth, or null for none")
    recipes: list[RecipeName] = Field(default_factory=lambda: ["pidflow", "seed"], min_length=1)
    dims: list[Dim] = Field(default_factory=lambda: list(DEFAULT_REQUEST["dims"]), min_length=3, max_length=3,
                            description="PCA sizes of the pidflow recipe (each at most PIDFLOW_MAX_DIM)")
    gaussianize: Literal["auto", "none", "copula", "flow"] | bool = DEFAULT_REQUEST["gaussianize"]
    estimator: Literal["corrected", "plugin"] = DEFAULT_REQUEST["estimator"]
    bootstrap: int = Field(DEFAULT_REQUEST["bootstrap"], ge=0, description="at most PIDFLOW_MAX_BOOTSTRAP")
    knockout_target: Literal["baseline", "own"] = DEFAULT_REQUEST["knockout_target"]
    seed_variance: float = Field(0.95, gt=0, le=1, description="variance kept by the seed recipe's PCA")
    seed: int = Field(DEFAULT_REQUEST["seed"], ge=0, le=MAX_SEED)
    question_ids: dict[str, Annotated[list[str | int], Field(min_length=1)]] | None = Field(
        None, description="task -> question ids to use (each task one of `tasks`)")


class StudyPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    task: str
    progress: float
    message: str | None = None


class StudyLinks(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="0..1")
    status_url: str
    report_url: str = Field(description="JSON; CSV and HTML at report.csv and report.html")
    page_url: str = Field(description="the study page (HTML)")


class StudyStatus(StudyLinks):
    """A study's state and each (model, task) part's progress."""

    message: str | None = None
    error: str | None = None
    parts: list[StudyPart]
    created_at: float | None = Field(None, description="epoch seconds")
    updated_at: float | None = Field(None, description="epoch seconds")


class ListedStudy(StudyLinks):
    models: list[str] | None = None
    tasks: list[str] | None = None
    created_at: float | None = Field(None, description="epoch seconds")


class StudyList(BaseModel):
    items: list[ListedStudy]


class StudyReport(BaseModel):
    """The study report, schema pidflow.study/1 (docs/study.md): request, models, parts, headline rows,
    correlations, knockouts, series, findings (bits; shares are fractions of the layer's total)."""

    model_config = ConfigDict(extra="allow")
    schema_: str = Field(alias="schema", description="pidflow.study/1")
    request: dict


def _is_server_path(name: str) -> bool:
    """A configured model that names a folder of this server (not published in the OpenAPI enums)."""
    from pathlib import Path

    if name.startswith(("/", "~", ".")) or "\\" in name:
        return True
    try:
        return Path(name).expanduser().is_dir()
    except OSError:
        return False


def _model_choices(models: tuple[str, ...]) -> list[dict]:
    """`model` as the gate admits it: a configured name (folders of this server not listed), an uploaded
    features file, and, when folders are configured, any string (GET /models names them)."""
    public = [name for name in models if not _is_server_path(name)]
    choices = [{"type": "string", "enum": public},
               {"type": "string", "pattern": "^features:[0-9a-f]{64}$",
                "description": "an uploaded features file (POST /features)"}]
    if len(public) < len(models):
        choices.append({"type": "string", "minLength": 1,
                        "description": "a model folder configured on this server (GET /models)"})
    return choices


FEATURES_DATASET, FEATURES_SPLIT = "features", "uploaded"  # an uploaded file's requests (pidcore.features.uploaded)


def with_server_limits(document: dict, limits: dict, models: tuple[str, ...], datasets: list[dict] | None = None,
                       max_layer: int | None = None, max_windows: int | None = None) -> dict:
    """The OpenAPI document with this server's configured bounds (`AnalysisService.limits()`), models,
    datasets with their splits and tasks, and the deepest knockout layer written into the
    AnalysisRequestBody and StudyRequestBody schemas, so what it accepts is what it publishes (rules across
    fields, such as a task of the chosen dataset or enough questions for the dims, are stated in the 422
    answer). An analysis also takes an uploaded file's request: dataset "features", split "uploaded" and
    the file's own task names. Model folders of this server are never listed."""
    schemas = document.get("components", {}).get("schemas", {})
    for name, field, uploads in (("AnalysisRequestBody", "model", True), ("StudyRequestBody", "models", False)):
        props = schemas.get(name, {}).get("properties", {})
        if not props:
            continue
        props["n_questions"]["maximum"] = limits["n_questions"][0]
        props["bootstrap"]["maximum"] = limits["bootstrap"][0]
        props["dims"]["items"]["maximum"] = limits["dims"][0]
        props["tasks"]["maxItems"] = limits["tasks"][0]
        target = props[field]["items"] if field == "models" else props[field]
        described = {key: value for key, value in target.items() if key not in ("type", "minLength", "pattern")}
        target.clear()
        target.update({**described, "anyOf": _model_choices(models)})
        if datasets:
            names = [entry["name"] for entry in datasets]
            splits = sorted({split for entry in datasets for split in entry.get("splits") or []})
            tasks = sorted({task if isinstance(task, str) else task["name"]
                            for entry in datasets for task in entry.get("tasks") or []})
            props["dataset"]["enum"] = names + [FEATURES_DATASET] * uploads
            props["split"]["enum"] = splits + [FEATURES_SPLIT] * uploads
            item = props["tasks"]["items"]
            if uploads:  # an uploaded file's tasks are its own names
                props["tasks"]["items"] = {"anyOf": [{"type": "string", "enum": tasks},
                                                     {**item, "description": "a task of an uploaded features file"}]}
            else:
                item["enum"] = tasks
        if name == "StudyRequestBody" and max_windows is not None:
            props["knockouts"]["maxItems"] = max_windows
    layers = schemas.get("KnockoutSpec", {}).get("properties", {}).get("layers", {}).get("items")
    if layers is not None and max_layer is not None:
        layers["maximum"] = max_layer
    return document


def with_declared_bodies(document: dict, hosted: bool) -> dict:
    """What the routes read by hand, declared: POST /studies takes a StudyRequestBody (the route hands the
    raw JSON to the request gate, whose refusals name their field), and the bearer token (HTTPBearer) is
    required in hosted mode and optional in open mode."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    study = StudyRequestBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in study.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["StudyRequestBody"] = study
    operation = document.get("paths", {}).get("/api/v1/studies", {}).get("post")
    if operation is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/StudyRequestBody"},
            "example": {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 200,
                        "sweep": {"edges": ["image->question"], "k": 9}, "recipes": ["pidflow", "seed"]}}}}
    schemes = document["components"].get("securitySchemes") or {}
    for name, scheme in schemes.items():
        scheme["description"] = ("hosted mode (PIDFLOW_API_TOKENS set): `Authorization: Bearer <token>` on every "
                                 "write and on the listings; an open server needs none")
        if not hosted:
            for operations in document.get("paths", {}).values():
                for op in operations.values():
                    if isinstance(op, dict) and op.get("security") == [{name: []}]:
                        op["security"] = [{name: []}, {}]
    return document
