"""Serving a cached result: gzip when the client accepts it, 304 for a matching If-None-Match, and an
ASGI fast path that answers repeated GETs of a result held in memory before routing."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response

from app.result_cache import CachedResult
from app.service import AnalysisService


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header admits gzip: `gzip` (or `x-gzip`) with q > 0, else `*` with q > 0."""
    weights: dict[str, float] = {}
    for part in (accept_encoding or "").split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        if not coding:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.lower()] = q
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def etag_matches(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """Whether an If-None-Match header names one of `etags` (weak comparison) or is `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") in etags:
            return True
    return False


def result_response(cached: CachedResult, headers: Mapping[str, str]) -> Response:
    """200 with the JSON (gzip-encoded when accepted), or 304 when If-None-Match names either ETag."""
    gzipped = accepts_gzip(headers.get("accept-encoding"))
    common = {"ETag": cached.gzip_etag if gzipped else cached.etag, "Vary": "Accept-Encoding"}
    if etag_matches(headers.get("if-none-match"), (cached.etag, cached.gzip_etag)):
        return Response(status_code=304, headers=common)
    if gzipped:
        return Response(cached.gzip, media_type="application/json", headers={**common, "Content-Encoding": "gzip"})
    return Response(cached.body, media_type="application/json", headers=common)


class CachedResultFastPath:
    """ASGI middleware: `GET /api/v1/analyses/{id}/result` of a result that `service.fresh_result` holds
    (in memory, its job recently seen alive in Redis) is answered here, without routing, dependency
    resolution, a thread hop or I/O; same bytes and headers as the route (gzip, ETag, 304). Everything
    else, including the first GET of a result and its periodic re-check, goes on to the app."""

    PREFIX, SUFFIX = "/api/v1/analyses/", "/result"

    def __init__(self, app, service: AnalysisService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and scope["query_string"] in (b"", b"format=json"):
            path = scope["path"]
            if path.startswith(self.PREFIX) and path.endswith(self.SUFFIX):
                analysis_id = path[len(self.PREFIX):-len(self.SUFFIX)]
                cached = self.service.fresh_result(analysis_id) if "/" not in analysis_id else None
                if cached is not None:
                    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
                    return await result_response(cached, headers)(scope, receive, send)
        return await self.app(scope, receive, send)
