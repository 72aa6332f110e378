"""Studies through `worker.studies`: submit (through the request gate, app/services/validation.py, and the
per-token quota that counts analyses and studies together), status and list; in hosted mode a study is read
through the submitting token's random handle (app.keys)."""

from __future__ import annotations

import hashlib
import secrets

from app.keys import HANDLE_PREFIX, OWNER_PREFIX
from app.registry import token_key as _token_key
from app.services.analyses import STUDY_MARK, Analyses

HOLDERS_PREFIX = "pidflow:study-holders:"  # hosted: the tokens (their keys) that submitted a study


class Studies(Analyses):
    """Submit and follow studies."""

    def list_studies(self, limit: int = 20) -> list[dict]:
        """The studies on this server, newest first (worker.studies.recent); PermissionError on a hosted
        server, where a study is read only through the handle its submitter got."""
        if self.settings.hosted:
            raise PermissionError("a hosted server does not list studies: open one by the id its submission "
                                  "returned")
        from worker import studies

        return self._call(studies.recent, limit)

    def submit_study(self, body: dict, token: str | None = None) -> dict:
        """Validate through the gate (`validate_study`: ValueError naming the field), count against the token's
        quota of queued or running work (QuotaExceeded), and queue a study (worker.studies.submit); the status
        under the id its submitter sees: hosted, the token's random handle (the same token gets the same one
        back); open, the study id. The token's write was counted by the caller (API or dashboard)."""
        from worker import studies

        request = self._call(self.validate_study, body, token)
        source = self.study_source(body, token, request)  # features files instead of extraction, if named
        if token is not None:
            self._check_quota(token)
        info = self._call(studies.submit, {**request.to_dict(), **source})
        shown = self._call(self._study_handle, info["id"], token) or info["id"]
        if self.settings.hosted and token is not None:
            self._call(self.redis.sadd, HOLDERS_PREFIX + info["id"], _token_key(token))
            self._call(self.redis.expire, HOLDERS_PREFIX + info["id"], int(self.settings.result_ttl_s))
        if token is not None and info.get("state") in ("queued", "running"):
            self._call(self.registry.mark_active, token, STUDY_MARK + shown, True)
        return {**info, "id": shown}

    def _study_handle(self, study_id: str, token: str | None) -> str | None:
        """Hosted mode: the submitting token's handle of the study (a content id could be guessed from the
        request); None in open mode, where the study id is its address."""
        if not self.settings.hosted or token is None:
            return None
        owner = OWNER_PREFIX + hashlib.sha256(f"{token}\0{study_id}".encode()).hexdigest()
        ttl = int(self.settings.result_ttl_s)
        existing = self.redis.get(owner)
        if existing:
            return existing.decode() if isinstance(existing, bytes) else existing
        handle = "s" + secrets.token_hex(16)
        self.redis.set(HANDLE_PREFIX + handle, study_id, ex=ttl)
        self.redis.set(owner, handle, ex=ttl)
        return handle

    def cancel_study(self, shown_id: str, token: str | None = None) -> dict:
        """Cancel a study (DELETE /api/v1/studies/{id}, the Studies tab's Cancel, worker.studies.cancel): its
        queued and running parts stop within about a second, finished parts stay (submitting it again
        resumes). Hosted: by a token that submitted it; while another token that submitted the same study
        still holds it, only this token's handle goes and the study runs on. KeyError when unknown."""
        from worker import studies

        study_id = self._study_id(shown_id)
        if self.settings.hosted:
            owner = OWNER_PREFIX + hashlib.sha256(f"{token}\0{study_id}".encode()).hexdigest()
            held = self._call(self.redis.get, owner) if token is not None else None
            if (held.decode() if isinstance(held, bytes) else held) != shown_id:
                raise PermissionError("only the token that submitted a study may cancel it")
            holders = HOLDERS_PREFIX + study_id
            self._call(self.redis.srem, holders, _token_key(token))
            self._call(self.registry.mark_active, token, STUDY_MARK + shown_id, False)
            if self._call(self.redis.scard, holders):
                self._call(self.redis.delete, owner, HANDLE_PREFIX + shown_id)
                return {**self._call(studies.status, study_id), "id": shown_id, "state": "cancelled",
                        "message": "cancelled for this token; another token's submission of the same study runs on"}
        return {**self._call(studies.cancel, study_id), "id": shown_id}

    def _study_id(self, shown_id: str) -> str:
        """The study id behind the id its submitter was given (hosted: a handle); KeyError when unknown."""
        shown_id = (shown_id or "").strip()
        if not self.settings.hosted:
            return shown_id
        found = self._call(self.redis.get, HANDLE_PREFIX + shown_id) if shown_id.isalnum() else None
        if not found:
            raise KeyError(f"unknown study {shown_id!r}")
        return found.decode() if isinstance(found, bytes) else found

    def study_status(self, shown_id: str) -> dict:
        """A study's state and per-part progress under the id its submitter was given (hosted: a handle;
        open: the study id); KeyError when unknown."""
        from worker import studies

        shown_id = (shown_id or "").strip()
        return {**self._call(studies.status, self._study_id(shown_id)), "id": shown_id}
