"""The /api/v1 routes. Sync handlers: they run in the thread pool and call the blocking service."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from app.api.conditional import result_response
from app.api.errors import FieldError
from app.api.schemas import (
    AnalysisPage,
    AnalysisRequestBody,
    AttentionView,
    DatasetInfo,
    Deleted,
    FeaturesSummary,
    FeaturesUpload,
    Health,
    JobStatus,
    Message,
    ModelInfo,
    QuestionView,
    ResultDocument,
    Revoked,
    ShareLink,
)
from app.api.security import require_reader, require_writer
from app.service import AnalysisService, JobNotReady, QuotaExceeded
from app.uploads import UploadTooLarge
from worker.messages import redact_paths

router = APIRouter(prefix="/api/v1")
ERRORS = {
    404: {"model": Message, "description": "unknown analysis, question, image or share link"},
    409: {"model": Message, "description": "the analysis has no result yet (or failed)"},
    503: {"model": Message, "description": "Redis or the job broker is not reachable"},
}
READ_ERRORS = {404: ERRORS[404], 503: ERRORS[503]}  # reads of what exists whatever its state
WRITE_ERRORS = {
    400: {"model": Message, "description": "the body cannot be decoded (not UTF-8 or not JSON)"},
    401: {"model": Message, "description": "hosted mode: missing or unknown bearer token"},
    422: {"description": "invalid request"},
    429: {"model": Message, "description": "rate limit, queued-work quota or the throttle of failed "
                                           "authentications reached (see Retry-After)"},
    507: {"model": Message, "description": "Redis is full (maxmemory): no new writes until there is room"},
}
AUTH_ERRORS = {  # a read that needs the token in hosted mode (not counted against the write limit)
    401: WRITE_ERRORS[401],
    429: {"model": Message, "description": "hosted mode: too many failed authentications from this address "
                                           "(see Retry-After)"},
}
CSV = {"text/csv": {"schema": {"type": "string", "description": "one row per run x layer: analysis_id, model, "
                               "tasks, run, knockout_edges, knockout_window, layer, the four parts, total "
                               "(bits), CI bounds when present; with a knockout also `delta` rows"}}}
Writer = Annotated[str | None, Depends(require_writer)]
Reader = Annotated[str | None, Depends(require_reader)]


def _service(request: Request) -> AnalysisService:
    return request.app.state.service


@contextmanager
def _mapped_errors():
    """Service exceptions -> HTTP answers with a readable detail."""
    try:
        yield
    except KeyError as exc:
        raise HTTPException(404, detail=redact_paths(str(exc.args[0])) if exc.args else "not found") from exc
    except JobNotReady as exc:
        job = exc.job
        if job.get("state") == "failed":
            detail = redact_paths(f"analysis {job.get('id')} failed: {job.get('error') or 'no reason recorded'}")
        else:
            detail = f"analysis {job.get('id')} is {job.get('state')} ({job.get('stage') or 'waiting'}), no result yet"
        # a job still running: ask again in a few seconds; a failed one will not change by waiting
        retry = {} if job.get("state") == "failed" else {"Retry-After": "5"}
        raise HTTPException(409, detail=detail, headers=retry or None) from exc
    except PermissionError as exc:
        raise HTTPException(403, detail=str(exc)) from exc
    except QuotaExceeded as exc:
        raise HTTPException(429, detail=str(exc), headers={"Retry-After": "30"}) from exc
    except UploadTooLarge as exc:
        raise HTTPException(413, detail=str(exc)) from exc
    except ValueError as exc:
        raise FieldError(422, detail=redact_paths(str(exc)), field=getattr(exc, "field", None)) from exc


def _with_links(job: dict, request: Request) -> dict:
    base = str(request.url_for("analysis_status", analysis_id=job["id"]).path)
    return {**job, "status_url": base, "result_url": base + "/result"}


@router.post("/analyses", response_model=JobStatus, status_code=202, operation_id="submit_analysis",
             tags=["analyses"],
             responses={200: {"model": JobStatus, "description": "the identical request's result is cached"},
                        **WRITE_ERRORS, **ERRORS,
                        507: {"model": Message, "description": "Redis is full, or a new analysis's features would "
                                                               "take the feature folder past PIDFLOW_FEATURE_MAX_GB "
                                                               "(the detail says what it holds and what is needed; "
                                                               "a cached result is still answered)"}},
             summary="Submit an analysis (200 when its result is already cached)")
def submit_analysis(body: AnalysisRequestBody, request: Request, response: Response, token: Writer):
    with _mapped_errors():
        job = _service(request).submit(body.model_dump(), token=token)
    if job.get("cached") and job.get("state") == "succeeded":
        response.status_code = 200
    response.headers["Location"] = _with_links(job, request)["status_url"]
    return _with_links(job, request)


@router.get("/analyses/{analysis_id}", response_model=JobStatus, responses=READ_ERRORS, name="analysis_status",
            operation_id="get_analysis", tags=["analyses"], summary="State, stage, progress (0..1) and error of an analysis")
def analysis_status(analysis_id: str, request: Request):
    with _mapped_errors():
        return _with_links(_service(request).status(analysis_id), request)


def _result(service: AnalysisService, analysis_id: str, fmt: str, request: Request) -> Response:
    with _mapped_errors():
        if fmt == "csv":
            name = analysis_id.replace(":", "-")
            return Response(service.result_csv(analysis_id), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        return result_response(service.cached_result(analysis_id), request.headers)


# ?format=csv, as older scripts ask: kept, and out of the OpenAPI document (whose JSON answer it is not); the
# CSV has its own path, `.../result.csv`, with its own content type
ResultFormat = Annotated[Literal["json", "csv"], Query(alias="format", include_in_schema=False)]
RESULT_DOC = {200: {"model": ResultDocument,
                    "description": "the result document (pidflow.result/1), gzip-encoded when the client "
                                   "accepts it, with an ETag (304 for If-None-Match)"},
              304: {"description": "If-None-Match names the result's ETag: unchanged"}}
RESULT_CSV = {200: {"content": CSV, "description": "one CSV row per run x layer (bits)"}}


@router.get("/analyses/{analysis_id}/result", responses={**RESULT_DOC, **ERRORS}, operation_id="get_result",
            tags=["analyses"], summary="The result document (bits); CSV at .../result.csv")
def analysis_result(analysis_id: str, request: Request, fmt: ResultFormat = "json"):
    # Repeated GETs of a result in memory never get here: app.server.CachedResultFastPath answers them.
    return _result(_service(request), analysis_id, fmt, request)


@router.get("/analyses/{analysis_id}/result.csv", responses={**RESULT_CSV, **ERRORS}, response_class=Response,
            operation_id="get_result_csv", tags=["analyses"], summary="The result as CSV: one row per run x layer")
def analysis_result_csv(analysis_id: str, request: Request):
    return _result(_service(request), analysis_id, "csv", request)


@router.get("/analyses/{analysis_id}/questions/{qid}", responses={200: {"model": QuestionView}, **ERRORS},
            operation_id="get_question", tags=["analyses"], summary="One question: answers, image URL and per-layer pointwise PID (bits)")
def analysis_question(analysis_id: str, qid: str, request: Request):
    with _mapped_errors():
        return _service(request).question(analysis_id, qid)


@router.get("/analyses/{analysis_id}/questions/{qid}/attention",
            responses={200: {"model": AttentionView}, **ERRORS,
                       422: {"model": Message, "description": "not available for this analysis's model"}},
            operation_id="get_attention", tags=["analyses"], summary="Attention of one question to its image patches per decoder layer (demo model)")
def analysis_question_attention(analysis_id: str, qid: str, request: Request):
    """{grid: [rows, cols], heads, layers: [{decoder_layer, question, last, question_heads, last_heads}],
    share, answer} for the baseline and (when the analysis has one) the knockout; maps are attention
    probabilities from the question tokens (mean) and from the last position to each image patch."""
    with _mapped_errors():
        return _service(request).attention(analysis_id, qid)


@router.delete("/analyses/{analysis_id}", response_model=Deleted, operation_id="delete_analysis",
               tags=["analyses"], responses={**WRITE_ERRORS, **READ_ERRORS,
                                             403: {"model": Message, "description": "hosted mode: not the owner"}},
               summary="Delete an analysis and its cached result")
def delete_analysis(analysis_id: str, request: Request, token: Writer):
    with _mapped_errors():
        deleted = _service(request).delete(analysis_id, token=token)
    return {"id": analysis_id, "deleted": deleted}


@router.get("/analyses", response_model=AnalysisPage,
            responses={**AUTH_ERRORS, 503: ERRORS[503]}, operation_id="list_analyses", tags=["analyses"],
            summary="A page of analyses, newest first: this token's in hosted mode, all in open mode")
def list_analyses(request: Request, token: Reader, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  q: Annotated[str | None, Query(max_length=200, description="words that must all appear in the "
                                                 "id, state, model, dataset, tasks, options or date (UTC)")] = None):
    with _mapped_errors():
        page = _service(request).list_analyses(token, offset=offset, limit=limit, search=q)
    return {**page, "items": [_with_links(job, request) for job in page["items"]]}


def _share_view(service: AnalysisService, link: dict, request: Request) -> dict:
    base = service.settings.public_url or str(request.base_url).rstrip("/")
    token = link["share_token"]
    return {**link, "url": f"{base}/api/v1/shared/{token}", "ui_url": f"{base}/?share={token}"}


OWNER_ERRORS = {**WRITE_ERRORS, **READ_ERRORS, 403: {"model": Message, "description": "hosted mode: not the owner"}}


@router.post("/analyses/{analysis_id}/share", response_model=ShareLink, status_code=201,
             responses=OWNER_ERRORS, operation_id="create_share", tags=["shares"],
             summary="Create a read-only share link (hosted: the owner only)")
def share_analysis(analysis_id: str, request: Request, token: Writer):
    service = _service(request)
    with _mapped_errors():
        link = service.create_share(analysis_id, token=token)
    return _share_view(service, link, request)


@router.get("/analyses/{analysis_id}/shares", response_model=list[ShareLink], responses=OWNER_ERRORS,
            operation_id="list_shares", tags=["shares"], summary="The live share links of an analysis (hosted: the owner only)")
def list_shares(analysis_id: str, request: Request, token: Writer):
    service = _service(request)
    with _mapped_errors():
        links = service.list_shares(analysis_id, token=token)
    return [_share_view(service, link, request) for link in links]


@router.delete("/analyses/{analysis_id}/shares/{share_token}", response_model=Revoked, responses=OWNER_ERRORS,
               operation_id="revoke_share", tags=["shares"], summary="Revoke a share link at once (hosted: the owner only)")
def revoke_share(analysis_id: str, share_token: str, request: Request, token: Writer):
    with _mapped_errors():
        _service(request).revoke_share(analysis_id, share_token, token=token)
    return {"share_token": share_token, "revoked": True}


def _shared_id(service: AnalysisService, share_token: str) -> str:
    with _mapped_errors():
        return service.resolve_share(share_token)


@router.get("/shared/{share_token}", response_model=JobStatus, responses=READ_ERRORS,
            operation_id="get_shared_analysis", tags=["shares"], summary="Status of a shared analysis (read-only)")
def shared_status(share_token: str, request: Request):
    service = _service(request)
    with _mapped_errors():
        job = service.status(_shared_id(service, share_token))
    base = f"/api/v1/shared/{share_token}"
    return {**job, "status_url": base, "result_url": base + "/result"}


@router.get("/shared/{share_token}/result", responses={**RESULT_DOC, **ERRORS}, operation_id="get_shared_result",
            tags=["shares"], summary="Result of a shared analysis (read-only); CSV at .../result.csv")
def shared_result(share_token: str, request: Request, fmt: ResultFormat = "json"):
    service = _service(request)
    return _result(service, _shared_id(service, share_token), fmt, request)


@router.get("/shared/{share_token}/result.csv", responses={**RESULT_CSV, **ERRORS}, response_class=Response,
            operation_id="get_shared_result_csv", tags=["shares"],
            summary="Result of a shared analysis as CSV (read-only)")
def shared_result_csv(share_token: str, request: Request):
    service = _service(request)
    return _result(service, _shared_id(service, share_token), "csv", request)


@router.get("/shared/{share_token}/questions/{qid}", responses={200: {"model": QuestionView}, **ERRORS},
            operation_id="get_shared_question", tags=["shares"], summary="One question of a shared analysis (read-only)")
def shared_question(share_token: str, qid: str, request: Request):
    service = _service(request)
    with _mapped_errors():
        return service.question(_shared_id(service, share_token), qid)


UPLOAD_FULL = ("no room for the file, nothing of it kept (the detail says what is held and what the file needs): "
               "the feature folder's volume is full or its files would pass PIDFLOW_FEATURE_MAX_GB; in hosted mode, "
               "this token's uploads would pass its quota PIDFLOW_UPLOAD_QUOTA_GB (a file it holds already costs "
               "nothing more); or Redis is full")
FeaturesId = Annotated[str, FastPath(description="an upload's id: in hosted mode the token's handle (`u` + 32 hex "
                                                 "digits) from POST /features, or the file's sha256")]
FEATURES_404 = {404: {"model": Message, "description": "unknown or expired features file, or a handle deleted"},
                503: ERRORS[503]}
FEATURES_BODY = {"requestBody": {"required": True, "description": "the features file's bytes (npz, safetensors "
                                 "or .pt; docs/features-format.md)",
                                 "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}}


@router.post("/features", status_code=201, openapi_extra=FEATURES_BODY, operation_id="upload_features",
             tags=["features"],
             responses={**WRITE_ERRORS,
                        201: {"model": FeaturesUpload, "description": "stored; `id` is this token's handle in hosted "
                                                                      "mode (the file's sha256 in open mode)"},
                        200: {"model": FeaturesUpload, "description": "the same file was uploaded before (created: "
                                                                      "false); hosted: this token's handle of it"},
                        401: {"model": Message, "description": "hosted mode: missing or unknown bearer token, "
                                                               "answered before the body is read"},
                        413: {"model": Message, "description": "file over PIDFLOW_MAX_UPLOAD_BYTES"},
                        422: {"model": Message, "description": "everything wrong with the file"},
                        503: ERRORS[503],
                        507: {"model": Message, "description": UPLOAD_FULL}},
             summary="Upload a pooled-features file; analyse it by POSTing its `request` to /analyses")
async def upload_features(request: Request, response: Response, token: Writer, filename: str | None = None):
    from app.uploads import receive, spool_folder, streamed_limit

    service = _service(request)
    with _mapped_errors():  # the body goes to disk as it arrives; the file is then read a layer at a time
        received = await receive(request.stream(), streamed_limit(service.settings),
                                 await run_in_threadpool(spool_folder))
        try:
            info = await run_in_threadpool(service.upload_features, received, filename, token)
        finally:
            received.discard()
    if not info["created"]:
        response.status_code = 200
    return info


@router.get("/features/{features_id}", responses={200: {"model": FeaturesSummary}, **FEATURES_404},
            operation_id="get_features", tags=["features"],
            summary="Summary of an uploaded features file, by a token's handle or the file's sha256")
def features_info(features_id: FeaturesId, request: Request):
    with _mapped_errors():
        return _service(request).features_info(features_id)


@router.delete("/features/{features_id}", response_model=Deleted, operation_id="delete_features",
               tags=["features"], responses={**WRITE_ERRORS, **FEATURES_404,
                                             403: {"model": Message, "description": "hosted mode: the id is another "
                                                   "token's handle, or (by sha256) this token holds no upload of the "
                                                   "file"}},
               summary="Drop this token's hold of an uploaded features file (the file goes with the last holder's; "
                       "finished analyses keep their results)")
def delete_features(features_id: FeaturesId, request: Request, token: Writer):
    with _mapped_errors():
        deleted = _service(request).delete_features(features_id, token=token)
    return {"id": features_id, "deleted": deleted}


PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}


@router.get("/images/{image_id}", responses={200: {"content": PNG, "description": "the image (PNG)"},
                                             404: {"model": Message}, 503: ERRORS[503]},
            response_class=FileResponse, operation_id="get_image", tags=["catalogue"],
            summary="A dataset image, or a question image of an uploaded features file (PNG)")
def image(image_id: str, request: Request):
    with _mapped_errors():
        uploaded = _service(request).uploaded_image(image_id)
        if uploaded is not None:
            return Response(uploaded, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})
        path = _service(request).image_path(image_id)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/models", responses={200: {"model": list[ModelInfo]}}, operation_id="list_models",
            tags=["catalogue"], summary="Configured models (demo always; more from PIDFLOW_MODELS)")
def models(request: Request):
    return _service(request).models()


@router.get("/datasets", responses={200: {"model": list[DatasetInfo]}}, operation_id="list_datasets", tags=["catalogue"], summary="Datasets with their tasks")
def datasets(request: Request):
    return _service(request).datasets()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}}, operation_id="get_health",
            tags=["health"], summary="Redis and worker reachability")
def healthz(request: Request):
    health = _service(request).health()
    return JSONResponse(health, status_code=200 if health["redis"] else 503)
