"""Analyses through `worker.jobs`: submit (with the per-token quota), status, queue position, delete, and
the analysis the dashboard opens on. Ids and ownership: app/registry.py."""

from __future__ import annotations

from app.registry import SHARE_HANDLE
from app.services.base import QuotaExceeded, job_to_dict
from app.services.validation import Validation
from worker.messages import redact_paths

DEMO_KEY = "pidflow:demo-analysis"  # the analysis the dashboard opens on when its URL names none
TERMINAL = ("succeeded", "failed", "cancelled")
STUDY_MARK = "study:"  # a study's entry in a token's active set (the quota counts analyses and studies)


class Analyses(Validation):
    """Submit, follow and delete analyses."""

    def submit(self, request: dict, token: str | None = None) -> dict:
        """Validate and submit an analysis request; returns the job status dict (`cached` when done) under
        the analysis id this token sees (hosted: random, owned by the token, or by the server itself for
        `token=None`, as for its demo analysis; open: the job id)."""
        self.validate(request)
        if token is not None:
            self._check_quota(token)
        info = job_to_dict(self._call(self.jobs.submit, dict(request)))
        info["id"] = self._call(self.registry.adopt, info["id"], token)
        if token is not None and info.get("state") not in TERMINAL:
            self._call(self.registry.mark_active, token, info["id"], True)
        return info

    def _check_quota(self, token: str) -> None:
        """QuotaExceeded when this token already has PIDFLOW_MAX_ACTIVE analyses and studies queued or running."""
        limit = self.settings.max_active_per_token
        active = self._call(self.registry.active, token)
        if len(active) < limit:
            return
        still = 0
        for aid in active:
            try:
                if aid.startswith(STUDY_MARK):
                    state = self.study_status(aid.removeprefix(STUDY_MARK)).get("state")
                else:
                    state = self.status(aid).get("state")
            except KeyError:
                state = None
            if state in TERMINAL or state is None:
                self._call(self.registry.mark_active, token, aid, False)
            else:
                still += 1
        if still >= limit:
            raise QuotaExceeded(f"this token already has {still} analyses queued or running (a study counts as one), "
                                f"the limit (PIDFLOW_MAX_ACTIVE) is {limit}: wait for one to finish or delete one")

    def status(self, analysis_id: str) -> dict:
        """The job's status under `analysis_id` (an analysis id or a `share:<token>` handle)."""
        job = self._call(self.registry.job_of, analysis_id)
        info = job_to_dict(self._call(self.jobs.status, job))
        info["id"] = analysis_id
        for key in ("error", "message"):
            if info.get(key):
                info[key] = redact_paths(info[key])
        return info

    def queue_position(self, analysis_id: str) -> int | None:
        """Extraction tasks waiting ahead of this analysis's (0: next), None when it is not waiting."""
        finder = getattr(self.jobs, "queue_position", None)
        return self._call(finder, analysis_id) if finder else None

    def delete(self, analysis_id: str, token: str | None = None) -> bool:
        """Delete an analysis (hosted: only its owner may) with its share links (they answer 404 at once,
        results served from memory under them included); its job, result, running
        tasks and feature files (PIDFLOW_FEATURE_DIR) go too once no other analysis points at the same job."""
        self._call(self.registry.owner_check, analysis_id, token, "delete")
        self.status(analysis_id)  # KeyError (404) when unknown
        shares = self._call(self.registry.share_tokens, analysis_id)
        job, last = self._call(self.registry.forget, analysis_id)
        for handle in (analysis_id, *(SHARE_HANDLE + stok for stok in shares)):
            self._documents.drop(handle)  # results held in memory under the id and its share links
        if last:
            self._call(self.jobs.delete, job)
            _remove_feature_files(job)
        return True

    def set_demo_analysis(self, analysis_id: str) -> None:
        """Name the analysis the dashboard opens on (`pidflow serve` sets its demo analysis)."""
        self._call(self.redis.set, DEMO_KEY, analysis_id)

    def demo_analysis(self) -> str | None:
        """The id of the analysis the dashboard opens on, or None when none is set or it was deleted."""
        value = self._call(self.redis.get, DEMO_KEY)
        if value is None:
            return None
        analysis_id = value.decode() if isinstance(value, bytes) else str(value)
        try:
            self.status(analysis_id)
        except KeyError:
            return None
        return analysis_id


def _remove_feature_files(job_id: str) -> None:
    """Remove a deleted job's feature folder now (a task still running stops at its next step and removes
    what it wrote after this; the workers' heartbeat sweep takes anything left)."""
    from worker import feature_store

    try:
        feature_store.remove(job_id)
    except (OSError, ValueError):
        pass
