"""Dash callbacks of the page and of the analysis tabs, one module each (page_, new_analysis_, results_,
compare_, questions_callbacks.py; the Studies, Analyses and upload ones register themselves from app.ui).
`register` attaches them all; the helpers are re-exported here for the code that imports them from this
module."""

from __future__ import annotations

from app.ui import (
    compare_callbacks,
    new_analysis_callbacks,
    page_callbacks,
    questions_callbacks,
    results_callbacks,
)
from app.ui.compare_callbacks import analysis_ref, compare_candidates, recent_options
from app.ui.new_analysis_callbacks import (
    FORM_ERROR_IDS,
    FORM_FIELDS,
    build_request,
    form_field_of,
    plain_message,
)
from app.ui.page_callbacks import (
    STAGE_WORDS,
    TABS,
    VIEW_KEYS,
    initial_view,
    parse_location,
    view_search,
    wanted_tab,
)
from app.ui.questions_callbacks import filter_questions, own_terms_note, question_card, register_attention
from app.ui.results_callbacks import (
    GRAPH_IDS,
    MAIN_GRAPHS,
    RECENT_KEPT,
    demo_story,
    effects_table,
    layer_notes,
    remember,
    rendered_results,
)

__all__ = ["FORM_ERROR_IDS", "FORM_FIELDS", "GRAPH_IDS", "MAIN_GRAPHS", "RECENT_KEPT", "STAGE_WORDS", "TABS",
           "VIEW_KEYS", "analysis_ref", "build_request", "compare_candidates", "demo_story", "effects_table",
           "filter_questions", "form_field_of", "initial_view", "layer_notes", "own_terms_note", "parse_location",
           "plain_message", "question_card", "recent_options", "register", "register_attention", "remember",
           "rendered_results", "view_search", "wanted_tab"]


def register(app, service) -> None:
    """Attach the callbacks of the page and of the New analysis, Results, Compare and Questions tabs to `app`,
    reading through `service`."""
    for tab in (questions_callbacks, new_analysis_callbacks, page_callbacks, results_callbacks, compare_callbacks):
        tab.register(app, service)
