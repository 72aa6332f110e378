"""/api/v1/studies (submit, status, report as JSON / CSV / HTML) and the study page /study/{id}.

A study runs on the Celery workers (worker/studies.py); the page is the report's self-contained HTML
(small multiples, sweep heatmaps, tables) with export buttons, or a progress page that refreshes itself.
"""

from __future__ import annotations

import html
import math
from contextlib import contextmanager
from typing import Annotated, Literal

import redis
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from app.api.errors import FieldError
from app.api.schemas import Message, StudyList, StudyReport, StudyStatus
from app.api.security import require_writer
from app.keys import HANDLE_PREFIX
from app.service import QuotaExceeded
from worker.messages import redact_paths

router = APIRouter()
Writer = Annotated[str | None, Depends(require_writer)]
EXAMPLE = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 200,
           "sweep": {"edges": ["image->question"], "k": 9}, "recipes": ["pidflow", "seed"]}


@contextmanager
def _mapped():
    """The answers of the analyses' routes: 404 unknown, 409 not ready, 403 not allowed, 429 over the
    token's quota, 422 refused by the request gate (with its field), 503 Redis away."""
    from worker.studies import StudyNotReady

    try:
        yield
    except StudyNotReady as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except KeyError as exc:
        raise HTTPException(404, detail=str(exc.args[0]) if exc.args else "not found") from exc
    except PermissionError as exc:
        raise HTTPException(403, detail=str(exc)) from exc
    except QuotaExceeded as exc:
        raise HTTPException(429, detail=str(exc), headers={"Retry-After": "30"}) from exc
    except ValueError as exc:
        raise FieldError(422, detail=redact_paths(str(exc)), field=getattr(exc, "field", None)) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise HTTPException(503, detail=f"Redis is not reachable: {exc}") from exc


def _links(info: dict, shown_id: str | None = None) -> dict:
    shown = shown_id or info["id"]
    base = f"/api/v1/studies/{shown}"
    return {**info, "id": shown, "status_url": base, "report_url": base + "/report", "page_url": f"/study/{shown}"}


def _resolve(request: Request, shown_id: str) -> str:
    """The study id behind an address: in hosted mode only a handle resolves (a content id is 404)."""
    service = request.app.state.service
    if not service.settings.hosted:
        return shown_id
    study_id = service.redis.get(HANDLE_PREFIX + shown_id) if shown_id.isalnum() else None
    if not study_id:
        raise HTTPException(404, detail=f"unknown study {shown_id!r}")
    return study_id.decode() if isinstance(study_id, bytes) else study_id


NOT_FOUND = {404: {"model": Message, "description": "unknown study"}}
UNREACHABLE = {503: {"model": Message, "description": "Redis or the job broker is not reachable"}}
WRITE = {
    400: {"model": Message, "description": "the body cannot be decoded (not UTF-8 or not JSON)"},
    401: {"model": Message, "description": "hosted mode: missing or unknown bearer token"},
    429: {"model": Message, "description": "rate limit, queued-work quota or the throttle of failed "
                                           "authentications reached (see Retry-After)"},
    507: {"model": Message, "description": "Redis is full (maxmemory): no new writes until there is room"},
}
NOT_READY = {409: {"model": Message, "description": "the study is still queued or running, or it failed or was "
                                                   "cancelled: no report"}}
REPORT_CSV = {"text/csv": {"schema": {"type": "string", "description": "the report's rows (docs/study.md)"}}}
REPORT_HTML = {"text/html": {"schema": {"type": "string", "description": "the self-contained report page"}}}


@router.post("/api/v1/studies", status_code=202, response_model=StudyStatus, operation_id="submit_study",
             tags=["studies"],
             responses={200: {"model": StudyStatus, "description": "the same study finished before: its status"},
                        **WRITE, 422: {"model": Message, "description": "refused by the request gate (the field "
                                                                         "is named)"}, **UNREACHABLE},
             summary="Submit a study (models x tasks x runs x recipes); body: StudyRequestBody")
def submit_study(request: Request, response: Response, token: Writer,
                 body: Annotated[dict, Body(examples=[EXAMPLE])]):
    with _mapped():  # the dashboard's Studies form submits through the same service call
        info = request.app.state.service.submit_study(body, token)
    if info["state"] == "succeeded":
        response.status_code = 200
    links = _links(info)
    response.headers["Location"] = links["status_url"]
    return links


@router.get("/api/v1/studies", summary="The studies on this server, newest first (open servers only)",
            response_model=StudyList, operation_id="list_studies", tags=["studies"],
            responses={403: {"model": Message, "description": "hosted mode: studies are not listed"}, **UNREACHABLE})
def list_studies(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20):
    """{"items": [{id, state, progress, models, tasks, created_at, page_url, ...}]}; 403 on a hosted server,
    where each study is read through the handle its submitter got."""
    service = request.app.state.service
    try:
        rows = service.list_studies(limit)
    except PermissionError as exc:
        raise HTTPException(403, detail=str(exc)) from exc
    with _mapped():
        return {"items": [_links(row) for row in rows]}


@router.get("/api/v1/studies/{study_id}", summary="State and progress of a study and of each part",
            response_model=StudyStatus, operation_id="get_study", tags=["studies"],
            responses={**NOT_FOUND, **UNREACHABLE})
def study_status(request: Request, study_id: str):
    from worker import studies

    with _mapped():
        return _links(studies.status(_resolve(request, study_id)), study_id)


@router.delete("/api/v1/studies/{study_id}", summary="Cancel a study: its queued and running parts stop, finished parts stay",
               response_model=StudyStatus, operation_id="cancel_study", tags=["studies"],
               responses={**WRITE, 403: {"model": Message, "description": "hosted mode: not a token that submitted it"},
                          **NOT_FOUND, **UNREACHABLE})
def cancel_study(request: Request, study_id: str, token: Writer):
    """The study's status, state "cancelled" (a finished or failed study is left as it is): queued parts
    never start and running ones stop at their next progress step (about a second); the parts that finished
    stay, and submitting the same study again resumes with the missing ones."""
    with _mapped():
        return _links(request.app.state.service.cancel_study(study_id, token), study_id)


def _report(request: Request, study_id: str) -> dict:
    from worker import studies

    with _mapped():
        return studies.report(_resolve(request, study_id))


# ?format=csv|html, as the study page's export buttons and older scripts ask: kept, and out of the OpenAPI
# document; CSV and HTML have their own paths with their own content types
ReportFormat = Annotated[Literal["json", "csv", "html"], Query(alias="format", include_in_schema=False)]
REPORT_ERRORS = {**NOT_FOUND, **NOT_READY, **UNREACHABLE}


@router.get("/api/v1/studies/{study_id}/report", summary="The study's report (JSON); CSV and HTML at report.csv "
            "and report.html", operation_id="get_study_report", tags=["studies"],
            responses={200: {"model": StudyReport, "description": "the report (pidflow.study/1)"}, **REPORT_ERRORS})
def study_report(request: Request, study_id: str, fmt: ReportFormat = "json"):
    return _report_as(request, study_id, fmt)


@router.get("/api/v1/studies/{study_id}/report.csv", summary="The study's report as CSV", response_class=Response,
            operation_id="get_study_report_csv", tags=["studies"],
            responses={200: {"content": REPORT_CSV, "description": "the report's rows"}, **REPORT_ERRORS})
def study_report_csv(request: Request, study_id: str):
    return _report_as(request, study_id, "csv")


@router.get("/api/v1/studies/{study_id}/report.html", summary="The study's report as one self-contained HTML page",
            response_class=Response, operation_id="get_study_report_html", tags=["studies"],
            responses={200: {"content": REPORT_HTML, "description": "the report page"}, **REPORT_ERRORS})
def study_report_html(request: Request, study_id: str):
    return _report_as(request, study_id, "html")


def _report_as(request: Request, study_id: str, format: str) -> Response:  # noqa: A002
    from pidcore.study.export import to_csv, to_html

    document = _report(request, study_id)
    if format == "csv":
        return Response(to_csv(document), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="pidflow-study-{study_id}.csv"'})
    if format == "html":
        from app.study_cli import plotly_js

        return HTMLResponse(to_html(document, plotly_js=plotly_js()), headers={
            "Content-Disposition": f'attachment; filename="pidflow-study-{study_id}.html"'})
    return JSONResponse(finite(document),
                        headers={"Content-Disposition": f'inline; filename="pidflow-study-{study_id}.json"'})


def finite(value):
    """The report with NaN and infinities as null: JSON has no such numbers (a study of features files without
    answers has no accuracy or probability of the answer, NaN in the report as the workers store it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def _progress_page(info: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(p['model'])}</td><td>{html.escape(p['task'])}</td>"
                   f"<td><progress max='1' value='{p['progress']}'></progress> {100 * p['progress']:.0f}%</td>"
                   f"<td>{html.escape(p['message'] or '')}</td></tr>" for p in info["parts"])
    error = f"<p class='error'>{html.escape(info['error'])}</p>" if info.get("error") else ""
    refresh = "" if info["state"] in ("failed", "cancelled") else "<meta http-equiv='refresh' content='2'>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{refresh}<title>pidflow study</title></head><body>"
            f"<p><a href='/?tab=studies&amp;study={html.escape(info['id'])}'>← pidflow dashboard (Studies)</a></p>"
            f"<h1>pidflow study {info['id'][:8]}…</h1><p id='study-state'>{html.escape(info['state'])}: "
            f"{100 * info['progress']:.0f}%</p>{error}<table><thead><tr><th>model</th><th>task</th><th>progress</th>"
            f"<th>step</th></tr></thead><tbody>{rows}</tbody></table></body></html>")


@router.get("/study/{study_id}", include_in_schema=False, response_class=HTMLResponse)
def study_page(request: Request, study_id: str):
    """The report page with export buttons once ready; a self-refreshing progress page before."""
    from pidcore.study.export import to_html
    from worker import studies

    with _mapped():
        info = _links(studies.status(_resolve(request, study_id)), study_id)
    if info["state"] != "succeeded":
        return HTMLResponse(_progress_page(info), status_code=409 if info["state"] == "failed" else 200)
    from app.study_cli import plotly_js

    base = f"/api/v1/studies/{study_id}/report"
    links = {"Export JSON": f"{base}?format=json", "Export CSV": f"{base}?format=csv",
             "Export HTML": f"{base}?format=html"}
    back = ("← pidflow dashboard (Studies)", f"/?tab=studies&study={study_id}")
    return HTMLResponse(to_html(_report(request, study_id), plotly_js=plotly_js(), links=links, back=back))
