"""One error shape for every API answer >= 400: {"detail": "<a readable sentence>", "errors": [{"field":
"<request field or null>", "message": "..."}]} (errors may be absent on 404/405/413/503). FastAPI's own
422 list is folded into it, and the OpenAPI document says so for every error status."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldError(HTTPException):
    """An HTTP error about one request field (e.g. a refused combination: app.precheck.Refused)."""

    def __init__(self, status_code: int, detail: str, field: str | None = None, headers: dict | None = None):
        super().__init__(status_code, detail=detail, headers=headers)
        self.field = field


def _location(loc) -> str | None:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    body = {"detail": detail, "errors": [{"field": getattr(exc, "field", None), "message": detail}]}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    undecodable = [error for error in exc.errors() if error.get("type") == "json_invalid"]
    if undecodable:  # the body is not JSON at all: 400, as the OpenAPI document says (422: JSON that is refused)
        where = (undecodable[0].get("ctx") or {}).get("error") or "not valid JSON"
        detail = f"the body cannot be decoded as JSON: {where}"
        return JSONResponse({"detail": detail, "errors": [{"field": None, "message": detail}]}, status_code=400)
    errors = [{"field": _location(error.get("loc") or ()), "message": str(error.get("msg"))} for error in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors) or \
        "invalid request"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def unify_openapi(document: dict) -> dict:
    """Every error response of the OpenAPI document refers to the one error shape (Message)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "Message" not in schemas:
        return document
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in (operation.get("responses") or {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document
