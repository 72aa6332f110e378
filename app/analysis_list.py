"""The server's list of analyses: what a listed analysis shows of its request, and the search over it.

A search is words that must all appear (case-insensitive, as substrings) in an analysis's id, state,
model, dataset, tasks, estimator options, knockout edges or creation date (UTC, YYYY-MM-DD).
"""

from __future__ import annotations

import time

SEARCH_SCAN = 1000  # a search looks through this many of the newest analyses of the list
SUMMARY_FIELDS = ("model", "dataset", "tasks", "n_questions", "measure", "target", "knockout")


def request_summary(request: dict | None) -> dict:
    """The request fields a listed analysis shows (model, dataset, tasks, n_questions, measure, target,
    knockout); missing ones are None."""
    request = request or {}
    return {name: request.get(name) for name in SUMMARY_FIELDS}


def search_words(search: str | None) -> list[str]:
    """The lower-cased words of a search box ("" or None: no filter)."""
    return (search or "").lower().split()


def searchable_text(item: dict) -> str:
    """Everything a search matches against, lower-cased, for one listed analysis."""
    knockout = item.get("knockout") or {}
    parts = [item.get("id"), item.get("state"), item.get("model"), item.get("dataset"),
             *(item.get("tasks") or []), item.get("measure"), item.get("target")]
    if knockout:
        parts += ["knockout", *(knockout.get("edges") or [])]
    else:
        parts.append("baseline-only")
    if item.get("created_at"):
        parts.append(time.strftime("%Y-%m-%d", time.gmtime(float(item["created_at"]))))
    return " ".join(str(part) for part in parts if part).lower()


def matches(item: dict, words: list[str]) -> bool:
    """True when every word of the search is in the item's searchable text."""
    text = searchable_text(item)
    return all(word in text for word in words)
