"""Read-only share links of an analysis: create, list, revoke, resolve (app/registry.py keeps them)."""

from __future__ import annotations

from app.registry import SHARE_HANDLE
from app.services.analyses import Analyses


class Sharing(Analyses):
    """Share links."""

    def create_share(self, analysis_id: str, token: str | None = None) -> dict:
        """A read-only share link of an existing analysis (hosted: only its owner may share):
        {share_token, created_at, expires_at} (epoch seconds)."""
        self._call(self.registry.owner_check, analysis_id, token, "share")
        self.status(analysis_id)
        return self._call(self.registry.share, analysis_id)

    def list_shares(self, analysis_id: str, token: str | None = None) -> list[dict]:
        """The live share links of an existing analysis; KeyError (404) once it is deleted or expired."""
        self._call(self.registry.owner_check, analysis_id, token, "list the share links of")
        self.status(analysis_id)
        return self._call(self.registry.shares, analysis_id)

    def revoke_share(self, analysis_id: str, share_token: str, token: str | None = None) -> None:
        """Revoke a share link at once; KeyError if it is not a live link of this analysis."""
        self._call(self.registry.owner_check, analysis_id, token, "revoke the share links of")
        if not self._call(self.registry.revoke, analysis_id, share_token):
            raise KeyError(f"no live share link {share_token!r} of analysis {analysis_id}")
        self._documents.drop(SHARE_HANDLE + share_token)

    def resolve_share(self, share_token: str) -> str:
        """The read-only handle `share:<token>` to pass to status/result/question; KeyError if unknown,
        expired or revoked. It names no analysis id."""
        self._call(self.registry.shared_analysis, share_token)
        return SHARE_HANDLE + share_token
