"""Hosted-mode access: bearer tokens, per-token write limits and per-client throttling of failed
authentications (sliding windows in Redis, app.services.ratelimit)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.service import AnalysisService


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _known(token: str, tokens: tuple[str, ...]) -> bool:
    return any(hmac.compare_digest(token.encode(), known.encode()) for known in tokens)


def authenticated(request: Request) -> str | None:
    """The caller's valid token in hosted mode (401 without one); None in open mode."""
    service: AnalysisService = request.app.state.service
    if not service.settings.hosted:
        return None
    client = request.client.host if request.client else None
    wait = service.auth_throttled(client)
    if wait is not None:
        raise HTTPException(status_code=429, headers={"Retry-After": str(wait)},
                            detail=f"too many failed authentications from {client}; try again in {wait} s")
    token = bearer_token(request)
    if token is None or not _known(token, service.settings.api_tokens):
        service.auth_failed(client)
        raise HTTPException(
            status_code=401,
            detail="this server needs an API token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


# declares the bearer scheme in the OpenAPI document (required in hosted mode, optional in open mode: see
# app.api.schemas.with_declared_bodies); the token itself is read and checked by `authenticated`
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer")
Declared = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def require_reader(request: Request, _: Declared = None) -> str | None:
    """The caller's token for a listing (hosted: 401 without a valid one); not rate limited."""
    return authenticated(request)


def require_writer(request: Request, _: Declared = None) -> str | None:
    """The caller's token for a write; 401 in hosted mode without a valid one, 429 over the limit."""
    service: AnalysisService = request.app.state.service
    token = authenticated(request)
    if token is None:
        return None
    retry_after = service.rate_limit(token)
    if retry_after is not None:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {service.settings.rate_limit_per_minute} writes per minute reached; "
                   f"try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return token
