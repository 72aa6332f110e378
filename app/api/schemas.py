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


def with_server_limits(document: dict, limits: dict, models: tuple[str, ...], datasets: list[dict] | None = None,
                       max_layer: int | None = None) -> dict:
    """The OpenAPI document with this server's configured bounds (`AnalysisService.limits()`), models,
    datasets with their splits and tasks, and the deepest knockout layer written into the
    AnalysisRequestBody schema, so what it accepts is what it publishes (rules across fields, such as a
    task of the chosen dataset or enough questions for the dims, are stated in the 422 answer)."""
    schemas = document.get("components", {}).get("schemas", {})
    props = schemas.get("AnalysisRequestBody", {}).get("properties", {})
    if not props:
        return document
    props["n_questions"]["maximum"] = limits["n_questions"][0]
    props["bootstrap"]["maximum"] = limits["bootstrap"][0]
    props["dims"]["items"]["maximum"] = limits["dims"][0]
    props["tasks"]["maxItems"] = limits["tasks"][0]
    configured = {key: value for key, value in props["model"].items() if key != "type"}
    props["model"] = {**configured, "anyOf": [{"type": "string", "enum": list(models)},
                                              {"type": "string", "pattern": "^features:[0-9a-f]{64}$",
                                               "description": "an uploaded features file (POST /features)"}]}
    if datasets:
        props["dataset"]["enum"] = [entry["name"] for entry in datasets]
        props["split"]["enum"] = sorted({split for entry in datasets for split in entry.get("splits") or []})
        props["tasks"]["items"]["enum"] = sorted({task if isinstance(task, str) else task["name"]
                                                  for entry in datasets for task in entry.get("tasks") or []})
    layers = schemas.get("KnockoutSpec", {}).get("properties", {}).get("layers", {}).get("items")
    if layers is not None and max_layer is not None:
        layers["maximum"] = max_layer
    return document
