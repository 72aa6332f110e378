"""The list of analyses a token sees (hosted) or of all (open), newest first, with search."""

from __future__ import annotations

from app.services.analyses import Analyses


class Listings(Analyses):
    """Pages of the analyses list."""

    def list_analyses(self, token: str | None, offset: int = 0, limit: int = 20, search: str | None = None) -> dict:
        """A page of this token's analyses (hosted) or of all (open), newest first: {total, offset, limit,
        items: [status dicts plus model, dataset, tasks, n_questions, measure, target, knockout]}. `search`:
        words that must all appear in an analysis's id, state, model, tasks, options or date
        (app.analysis_list); it looks through the newest SEARCH_SCAN analyses and `total` counts matches."""
        from app.analysis_list import SEARCH_SCAN, matches, search_words

        words = search_words(search)
        if not words:
            total, ids = self._call(self.registry.listing, token, offset, limit)
            items = [item for item in (self._listed(token, aid) for aid in ids) if item is not None]
            return {"total": max(total - (len(ids) - len(items)), 0), "offset": offset, "limit": limit,
                    "items": items}
        _, ids = self._call(self.registry.listing, token, 0, SEARCH_SCAN)
        found = [item for item in (self._listed(token, aid) for aid in ids) if item is not None and matches(item, words)]
        return {"total": len(found), "offset": offset, "limit": limit, "items": found[offset:offset + limit]}

    def _listed(self, token: str | None, analysis_id: str) -> dict | None:
        """One analysis of the list: its status and what it asked for; None (and dropped from the list)
        when its job expired."""
        from app.analysis_list import request_summary

        try:
            item = self.status(analysis_id)
        except KeyError:
            self._call(self.registry.unlist, token, analysis_id)
            return None
        reader = getattr(self.jobs, "request", None)
        try:
            request = self._call(reader, self._call(self.registry.job_of, analysis_id)) if reader else None
        except KeyError:
            request = None
        return {**item, **request_summary(request)}
