"""`create_app()`: the FastAPI application (REST API under /api/v1, Dash dashboard at /)."""

from __future__ import annotations

import gc
import hmac
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.routing import Match, Mount

from app.api import errors
from app.api.conditional import CachedResultFastPath
from app.api.routes import router
from app.api.schemas import with_declared_bodies, with_server_limits
from app.docs_assets import add_docs_routes
from app.service import AnalysisService, ServiceUnavailable, StorageFull
from app.settings import Settings
from app.uploads import limits as upload_limits
from app.uploads import streamed_limit
from worker.feature_store import FeatureStoreFull
from worker.messages import FULL_REDIS

log = logging.getLogger(__name__)
BODY_METHODS = {"POST", "PUT", "PATCH"}


@dataclass(frozen=True)
class LargeBody:
    """A larger body limit for one path. `output`: only for the Dash callback whose body names this output
    first (read from the body's first PIDFLOW_MAX_BODY_BYTES); other callbacks keep the small limit.
    `token`: in hosted mode the route needs a bearer token, checked from the headers before the body (for
    a Dash callback's `output`: once its body passes the small limit, from the Authorization header or the
    dashboard's TOKEN_COOKIE, before any more of it is read)."""

    max_bytes: int
    what: str
    output: str | None = None
    token: bool = False
    stream: bool = False  # the route reads the body as a stream (and counts it): not buffered here
    describe: object = None  # () -> dict: the path's limits, answered to OPTIONS


class BodySizeLimit:
    """ASGI middleware: 413 (JSON) for request bodies over `max_bytes` (declared or streamed); `limits`
    gives some paths a LargeBody (file uploads, the dashboard's drop zone). In hosted mode (`tokens`), a
    request to a path whose LargeBody needs a token and has no known one is passed on with its body unread
    (at most `max_bytes` of it readable): its route answers 401 before reading it; a Dash callback's body
    that needs the large limit and a token answers 401 itself, having read no more than the small limit
    and one chunk."""

    def __init__(self, app, max_bytes: int, limits: dict[str, LargeBody] | None = None, tokens: tuple[str, ...] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.limits = dict(limits or {})
        self.tokens = tuple(tokens)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        large = self.limits.get(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "OPTIONS" and large is not None and large.describe is not None \
                and b"access-control-request-method" not in headers:  # not a CORS preflight
            return await self._describe(send, large)
        if scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        if large is not None and large.token and large.output is None and self.tokens \
                and not self._known_token(headers):
            return await self.app(scope, _capped(receive, self.max_bytes), send)
        declared = headers.get(b"content-length")
        ceiling, ceiling_what = (large.max_bytes, large.what) if large is not None else (self.max_bytes, "request body")
        if declared is not None and declared.isdigit() and int(declared) > ceiling:
            return await self._reject(send, ceiling, ceiling_what)
        if large is not None and large.stream:  # its route streams the body to disk and counts it itself
            return await self.app(scope, receive, send)
        limit, what = (large.max_bytes, large.what) if large is not None and large.output is None \
            else (self.max_bytes, "request body")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit and limit < ceiling and _names_output(b"".join(chunks)[:self.max_bytes], large.output):
                if large.token and self.tokens and not self._known_token(headers, cookie=True):
                    return await self._unauthorized(send)
                limit, what = large.max_bytes, large.what
            if size > limit:
                return await self._reject(send, limit, what)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _known_token(self, headers: dict, cookie: bool = False) -> bool:
        """Whether the headers carry a known token: `Authorization: Bearer`, or (`cookie`) the dashboard's
        TOKEN_COOKIE."""
        scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        tokens = [value.strip()] if scheme.lower() == "bearer" else []
        if cookie:
            tokens += _cookie_tokens(headers.get(b"cookie", b"").decode("latin-1"))
        return any(token and hmac.compare_digest(token.encode(), known.encode())
                   for token in tokens for known in self.tokens)

    async def _unauthorized(self, send):
        response = JSONResponse({"detail": "the dashboard's features upload needs an API token on this server: "
                                           "type it in the API token field, then drop the file again"},
                                status_code=401)
        await response({"type": "http"}, None, send)

    async def _describe(self, send, large: LargeBody):
        """OPTIONS on an upload path: its limits (JSON and X-Pidflow-* headers), so a client can refuse a
        file before sending it."""
        from starlette.concurrency import run_in_threadpool

        limits = await run_in_threadpool(large.describe)
        headers = {"Allow": "OPTIONS, POST", **{f"X-Pidflow-{key.replace('_', '-').title()}": str(value).lower()
                                                 if isinstance(value, bool) else str(value)
                                                 for key, value in limits.items() if value is not None}}
        response = JSONResponse(limits, headers=headers)
        await response({"type": "http"}, None, send)

    async def _reject(self, send, max_bytes: int, what: str):
        response = JSONResponse({"detail": f"{what} larger than {max_bytes} bytes"}, status_code=413)
        await response({"type": "http"}, None, send)


TOKEN_COOKIE = "pidflow_token"  # the dashboard's API token field, set by the browser (app.ui.upload_callbacks)


def _cookie_tokens(header: str) -> list[str]:
    """The values of TOKEN_COOKIE in a Cookie header."""
    from urllib.parse import unquote

    return [unquote(value.strip()) for name, _, value in (part.partition("=") for part in header.split(";"))
            if name.strip() == TOKEN_COOKIE]


def _capped(receive, max_bytes: int):
    """`receive` that hands on at most `max_bytes` of the body, then a disconnect."""
    size = 0

    async def capped():
        nonlocal size
        if size > max_bytes:
            return {"type": "http.disconnect"}
        message = await receive()
        size += len(message.get("body", b""))
        return message if size <= max_bytes else {"type": "http.disconnect"}

    return capped


_OUTPUT = re.compile(rb'^\s*\{\s*"output"\s*:\s*"([^"\\]{1,2000})"')


def _names_output(head: bytes, output: str) -> bool:
    """Whether a Dash callback body (its start) is for the callback whose first output is `output`:
    "output" is the first key the renderer sends ("..a.children...b.data@hash.." for several outputs)."""
    match = _OUTPUT.match(head)
    if match is None:
        return False
    first = match.group(1).decode("utf-8", "replace").removeprefix("..").split("...")[0].removesuffix("..")
    return first.split("@")[0] == output


class DashErrorsAsJson:
    """ASGI wrapper of the dashboard: Flask's HTML error pages for /_dash-* requests (a body that is not a
    callback, an unknown callback, a callback that failed) answered as JSON with the same status."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or "/_dash-" not in scope.get("path", ""):
            return await self.app(scope, receive, send)
        replaced = False

        async def json_errors(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] >= 400 and \
                    dict(message.get("headers") or []).get(b"content-type", b"").startswith(b"text/html"):
                replaced = True
                status = message["status"]
                response = JSONResponse({"detail": DASH_ERRORS.get(status, f"dashboard request failed ({status})")},
                                        status_code=status)
                await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                return await send({"type": "http.response.body", "body": response.body, "more_body": False})
            if not replaced:
                await send(message)

        return await self.app(scope, receive, json_errors)


DASH_ERRORS = {400: "not a dashboard callback: the body must be the JSON the dashboard sends",
               500: "the dashboard callback failed (unknown callback or bad inputs); the server log says why"}
# the drop zone's callback (app.ui.upload_callbacks): its first output, as its body names it
DROP_ZONE_OUTPUT = "features-summary.children"


def _full(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"{FULL_REDIS}; reads still work"}, status_code=507, headers={"Retry-After": "60"})


def _disk_full(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": exc.strerror or str(exc)}, status_code=507)


def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    detail = str(exc) if isinstance(exc, ServiceUnavailable) else f"Redis is not reachable: {exc}"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


def _fallback_home() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>pidflow</title><h1>pidflow</h1>"
        "<p>The dashboard is not installed here. The REST API is at "
        '<a href="/api/v1/docs">/api/v1/docs</a>.</p>'
    )


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """At server start, refuse a Redis that evicts keys (it would lose work silently); then move every
    object alive (imports, the dashboard) out of the collector's reach: full collections then skip them,
    instead of pausing all requests for tens of ms under load."""
    client = getattr(app.state.service, "redis", None)
    if client is not None:
        _refuse_an_evicting_redis(client)
    gc.collect()
    gc.freeze()
    yield


def _refuse_an_evicting_redis(client) -> None:
    from worker.heartbeat import eviction_problem

    try:
        problem = eviction_problem(client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return  # Redis away: requests answer 503 until it is back
    if problem:
        log.critical("pidflow server not started: %s", problem)
        raise RuntimeError(f"pidflow server not started: {problem}")


TAGS = [
    {"name": "analyses", "description": "submit an analysis, follow it, read its result (JSON or CSV), list, delete"},
    {"name": "features", "description": "upload a pooled-features file and analyse it (docs/features-format.md)"},
    {"name": "shares", "description": "read-only share links of an analysis, and the reads through them"},
    {"name": "studies", "description": "models x tasks x runs x recipes in one request, one report (docs/study.md)"},
    {"name": "catalogue", "description": "configured models, datasets and their tasks, images"},
    {"name": "health", "description": "Redis and worker reachability"},
]


def create_app(settings: Settings | None = None, service: AnalysisService | None = None,
               with_ui: bool = True) -> FastAPI:
    """The application: API routes first, then the Dash UI mounted at / (when `app.ui` provides it)."""
    service = service or AnalysisService(settings)
    settings = service.settings
    app = FastAPI(
        title="pidflow",
        version="0.1.0",
        description="Layer-wise Partial Information Decomposition of vision-language models. All "
        "information quantities are in bits. In hosted mode (PIDFLOW_API_TOKENS set) writes need "
        "`Authorization: Bearer <token>`.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served from local assets by app.docs_assets (no CDN)
        redoc_url=None,
        lifespan=_lifespan,
        openapi_tags=TAGS,
    )
    app.state.service = service
    app.include_router(router)
    add_docs_routes(app)
    errors.install(app)
    from app.api.study_routes import router as study_router

    app.include_router(study_router)  # /api/v1/studies and the study page /study/{id}
    _publish_limits(app, service)
    app.add_exception_handler(ServiceUnavailable, _unavailable)
    app.add_exception_handler(StorageFull, _full)
    app.add_exception_handler(FeatureStoreFull, _disk_full)
    app.add_exception_handler(redis.exceptions.OutOfMemoryError, _full)
    app.add_exception_handler(redis.exceptions.ConnectionError, _unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, _unavailable)
    app.add_middleware(CachedResultFastPath, service=service)  # inside CORS and the body limit
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    upload = settings.max_upload_bytes
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, tokens=settings.api_tokens, limits={
        "/api/v1/features": LargeBody(streamed_limit(settings), "features file (PIDFLOW_MAX_UPLOAD_BYTES)", token=True,
                                      stream=True, describe=lambda: upload_limits(settings)),
        # the dashboard's drop zone sends the file base64-encoded inside its callback's JSON, and its token
        # as the TOKEN_COOKIE header (the JSON has it too, but only after the file)
        "/_dash-update-component": LargeBody(upload * 4 // 3 + settings.max_body_bytes, "dashboard upload",
                                             output=DROP_ZONE_OUTPUT, token=True)})
    if with_ui:
        _mount_ui(app, service)
    return app


BODY_ERRORS = {
    "400": "the body cannot be decoded (not UTF-8 or not JSON)",
    "413": "the body is larger than PIDFLOW_MAX_BODY_BYTES",
    "503": "Redis or the job broker is not reachable",
    "507": "Redis is full (maxmemory), or the feature folder's volume is (a features file): no new writes until "
           "there is room",
}


def _body_errors(document: dict) -> dict:
    """Every operation that takes a body documents the answers any body route can give (BodySizeLimit,
    the JSON decoder, a Redis that is away or full), and every one with an id in its path a 404,
    whoever wrote the route."""
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                for status, description in BODY_ERRORS.items():
                    responses.setdefault(status, {"description": description})
            if "{" in path:  # an id in the path may name nothing
                responses.setdefault("404", {"description": "unknown id"})
    return document


def _publish_limits(app: FastAPI, service: AnalysisService) -> None:
    """Serve the OpenAPI document with the configured bounds of the request schema (built once)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            from app.services.validation import MAX_STUDY_WINDOWS

            document = with_declared_bodies(build(), hosted=service.settings.hosted)
            app.openapi_schema = errors.unify_openapi(_body_errors(
                with_server_limits(document, service.limits(), service.settings.models, service.datasets(),
                                   service.deepest_layer(), max_windows=MAX_STUDY_WINDOWS)))
        return app.openapi_schema

    app.openapi = openapi


def _mount_ui(app: FastAPI, service: AnalysisService) -> None:
    try:
        from a2wsgi import WSGIMiddleware

        from app.ui import create_dash_app
    except ImportError:
        log.warning("app.ui.create_dash_app is not available: serving the API only")
        app.get("/", include_in_schema=False)(_fallback_home)
        return
    dash_app = create_dash_app(service, requests_pathname_prefix="/")
    app.add_api_route("/api/{path:path}", _no_such_api_route, include_in_schema=False,
                      methods=list(_API_METHODS))
    app.mount("/", DashErrorsAsJson(WSGIMiddleware(dash_app.server)))


_API_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _no_such_api_route(request: Request) -> JSONResponse:
    """/api/ requests that no API route takes: a JSON 405 (with Allow) or 404, not the dashboard's page."""
    api_routes = [route for route in request.app.router.routes
                  if getattr(route, "endpoint", None) is not _no_such_api_route and not isinstance(route, Mount)]
    allowed = [method for method in _API_METHODS if method != request.method
               and any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in api_routes)]
    if allowed:
        return JSONResponse({"detail": f"{request.method} is not allowed on {request.url.path}; "
                                       f"use {', '.join(allowed)}"}, status_code=405,
                            headers={"Allow": ", ".join(allowed)})
    return JSONResponse({"detail": f"no API endpoint {request.url.path} (see /api/v1/docs)"}, status_code=404)
