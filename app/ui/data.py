"""The dashboard's only door to the analysis service. Every function turns service errors into a
`DataError` whose message can be shown in the page as it is."""

from __future__ import annotations

import hmac
from typing import Any

from app.service import JobNotReady, ServiceUnavailable


class DataError(Exception):
    """A failure the page should say plainly (unknown id, not ready, service down, bad request); `field`
    names the request field a refused request is about, when it is known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _plain(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _guard(call, *args, **kwargs) -> Any:
    try:
        return call(*args, **kwargs)
    except JobNotReady as exc:
        raise DataError(f"the analysis is not finished yet ({(exc.job or {}).get('state', 'running')})") from exc
    except ServiceUnavailable as exc:
        raise DataError(f"the analysis service is unavailable: {exc}") from exc
    except PermissionError as exc:
        raise DataError(f"not allowed: {exc}") from exc
    except (KeyError, ValueError) as exc:
        raise DataError(_plain(exc), field=getattr(exc, "field", None)) from exc
    except Exception as exc:  # noqa: BLE001 - e.g. Redis errors: shown in the page, never a traceback
        raise DataError(f"the service failed: {type(exc).__name__}: {exc}") from exc


def hosted(service) -> bool:
    """True when writes need an API token."""
    return bool(getattr(getattr(service, "settings", None), "hosted", False))


def upload_limit(service) -> int | None:
    """The most bytes a features file may have (PIDFLOW_MAX_UPLOAD_BYTES); None when not configured."""
    limit = getattr(getattr(service, "settings", None), "max_upload_bytes", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def _client_address() -> str | None:
    """The browser's address (the Dash request under a2wsgi), for throttling failed tokens per client."""
    try:
        import flask

        return flask.request.remote_addr if flask.has_request_context() else None
    except ImportError:
        return None


def check_token(service, token: str | None) -> str | None:
    """The token to write with (None outside hosted mode); DataError when hosted and it is not valid, or
    when this client failed too often (the API's per-client throttle)."""
    if not hosted(service):
        return None
    client = _client_address()
    wait = _guard(service.auth_throttled, client)
    if wait is not None:
        raise DataError(f"too many wrong tokens from this address; try again in {wait} s")
    token = (token or "").strip()
    known = getattr(service.settings, "api_tokens", ())
    if not token or not any(hmac.compare_digest(token.encode(), k.encode()) for k in known):
        _guard(service.auth_failed, client)
        raise DataError("this server needs a valid API token to start, list or delete analyses: enter it in the "
                        "token field under New analysis")
    return token


def writer(service, token: str | None) -> str | None:
    """check_token, then count one write against the token's rate limit, as the API does."""
    token = check_token(service, token)
    if token is not None:
        wait = _guard(service.rate_limit, token)
        if wait is not None:
            raise DataError(f"rate limit of {service.settings.rate_limit_per_minute} writes per minute reached; "
                            f"try again in {wait} s")
    return token


def models(service) -> list[dict]:
    return _guard(service.models)


def datasets(service) -> list[dict]:
    return _guard(service.datasets)


def submit(service, request: dict, token: str | None = None) -> dict:
    """Submit an analysis request; the job status dict (state, progress, cached, error)."""
    return _guard(service.submit, request, token=writer(service, token))


def status(service, analysis_id: str) -> dict:
    return _guard(service.status, analysis_id)


def result(service, analysis_id: str) -> dict:
    """The result document (pidflow.result/1)."""
    return _guard(service.result, analysis_id)


def question(service, analysis_id: str, qid: str) -> dict:
    """One question's view: texts, answers, image_url and per-layer pointwise terms (bits)."""
    return _guard(service.question, analysis_id, qid)


def result_csv(service, analysis_id: str) -> str:
    return _guard(service.result_csv, analysis_id)


def result_json(service, analysis_id: str) -> str:
    raw = _guard(service.result_json, analysis_id)
    return raw.decode() if isinstance(raw, bytes) else raw


def create_share(service, analysis_id: str, token: str | None = None) -> str:
    """A new share link's token (hosted: `token` must own the analysis)."""
    return _guard(service.create_share, analysis_id, token=token)["share_token"]


def resolve_share(service, share_token: str) -> str:
    """The read-only handle (`share:<token>`) to open a shared analysis with; it names no analysis id."""
    return _guard(service.resolve_share, share_token)


def demo_analysis(service) -> str | None:
    """The analysis the page opens on when its URL names none (the demo one `pidflow serve` runs), or None."""
    finder = getattr(service, "demo_analysis", None)
    return _guard(finder) if finder else None


def upload_features(service, contents: bytes, filename: str | None, token: str | None = None) -> dict:
    """Check and store a features file (app/uploads.py): its summary and the `request` analysing it."""
    return _guard(service.upload_features, contents, filename, writer(service, token))


def delete(service, analysis_id: str, token: str | None = None) -> bool:
    """Delete (cancel, when it runs) an analysis; in hosted mode with the token that submitted it."""
    return _guard(service.delete, analysis_id, token=writer(service, token))


def queue_position(service, analysis_id: str) -> int | None:
    """Extraction tasks ahead of this analysis in the queue, None when unknown or not waiting."""
    finder = getattr(service, "queue_position", None)
    try:
        return finder(analysis_id) if finder else None
    except Exception:  # noqa: BLE001 - a hint only
        return None


def estimate(service, request: dict) -> dict | None:
    """Expected cost of a request (seconds per stage, bias in bits), None when the service cannot say."""
    finder = getattr(service, "estimate", None)
    try:
        return finder(request) if finder else None
    except Exception:  # noqa: BLE001 - a hint only
        return None


def precheck(service, request: dict) -> tuple[str | None, str] | None:
    """(field, message) when the service would refuse `request` before queueing it, else None."""
    try:
        service.validate(request)
    except ValueError as exc:
        from app.precheck import field_of

        return getattr(exc, "field", None) or field_of(str(exc)), str(exc)
    except Exception:  # noqa: BLE001 - the submit says it
        return None
    return None


def attention(service, analysis_id: str, qid: str) -> dict:
    """Attention maps of one question (baseline, knockout) to its image patches."""
    return _guard(service.attention, analysis_id, qid)


def ask(service, image_bytes: bytes, question: str) -> dict:
    """The demo model's answer and attention maps for an uploaded image and question."""
    return _guard(service.ask, image_bytes, question)


def own_terms(service, analysis_id: str, image_bytes: bytes, question: str) -> dict:
    """An uploaded image and question placed among the analysis's questions: its pointwise terms per layer."""
    return _guard(service.own_terms, analysis_id, image_bytes, question)


def analyses(service, token: str | None = None, limit: int = 50) -> list[dict]:
    """The server's list of analyses, newest first (hosted mode: the token's own; [] without a valid one)."""
    lister = getattr(service, "list_analyses", None)
    if lister is None:
        return []
    try:
        return _guard(lister, check_token(service, token) if hosted(service) else None, 0, limit)["items"]
    except DataError:
        return []


def studies(service, limit: int = 20) -> list[dict]:
    """The studies on this server, newest first (DataError on a hosted server: it lists none)."""
    return _guard(service.list_studies, limit)


def study_status(service, study_id: str) -> dict:
    """A study's state and per-part progress (DataError when unknown)."""
    return _guard(service.study_status, study_id)


def analyses_page(service, token: str | None, offset: int = 0, limit: int = 10, search: str | None = None) -> dict:
    """A page of the server's analyses, newest first: {total, offset, limit, items} with each item's status
    and request summary (app.analysis_list). Hosted mode: those of `token` (DataError without a valid one);
    open mode: all."""
    lister = getattr(service, "list_analyses", None)
    if lister is None:
        return {"total": 0, "offset": offset, "limit": limit, "items": []}
    if hosted(service):
        if not (token or "").strip():
            raise DataError("this server lists the analyses of an API token: enter yours in the token field "
                            "under New analysis")
        token = check_token(service, token)
    return _guard(lister, token if hosted(service) else None, max(0, int(offset)), limit, search or None)


def submit_study(service, request: dict, token: str | None = None) -> dict:
    """Start a study (the service call POST /api/v1/studies makes, with its validation): its status under the
    id to open it by (hosted: the token's handle); the write counts against the token's rate limit."""
    return _guard(service.submit_study, request, token=writer(service, token))
