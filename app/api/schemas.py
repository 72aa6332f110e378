"""Request and response models of the REST API (they shape the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KnockoutEdge = Literal["image->question", "image->last", "question->last", "last->last"]


class KnockoutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edges: list[KnockoutEdge] = Field(min_length=1, description="attention edges to cut")
    layers: list[int] = Field(min_length=2, max_length=2, description="[first, last] decoder layers, inclusive")


class AnalysisRequestBody(BaseModel):
    """The body of POST /analyses (see docs/architecture.md, AnalysisRequest)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("demo", description="a configured model (GET /models)")
    dataset: str = Field("easy-vqa", description="a dataset of GET /datasets")
    tasks: list[str] = Field(default_factory=lambda: ["color"], min_length=1)
    split: str = "test"
    n_questions: int = Field(400, ge=1, description="questions per task (bounded by PIDFLOW_MAX_QUESTIONS)")
    correct_only: bool = False
    language_pooling: Literal["mean", "last"] = "mean"
    target: Literal["logprobs", "hidden"] = "logprobs"
    measure: Literal["broja", "mmi"] = "broja"
    dims: list[int] = Field(default_factory=lambda: [8, 8, 4], min_length=3, max_length=3,
                            description="PCA sizes for vision, language, target")
    gaussianize: bool = True
    bootstrap: int = Field(0, ge=0)
    knockout: KnockoutSpec | None = None
    seed: int = 0


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


class Health(BaseModel):
    ok: bool
    redis: bool
    workers: int | None = Field(description="live workers (Redis heartbeats, busy ones included); null when unknown")


class Message(BaseModel):
    detail: str
