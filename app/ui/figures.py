"""The dashboard's figures: the builders live in pidcore.plot (the same figures in notebooks and scripts);
this module names them for the dashboard's callbacks. Pure functions: no I/O."""

from __future__ import annotations

from pidcore.plot import (
    RUN_DASH,
    SERIES_COLOURS,
    TERM_COLOURS,
    TERM_LABELS,
    TERMS,
    as_document,
    attention_figure,
    attention_grid,
    comparison_figure,
    describe,
    difference_figure,
    difference_values,
    knockout_layers,
    layer_correlations,
    message_figure,
    own_terms_figure,
    pearson,
    question_figure,
    relative_depth,
    run_layers,
    shade_window,
    shared_y_max,
    stacked_figure,
    task_overlay_figure,
    task_series,
    term_values,
)

__all__ = [
    "RUN_DASH", "SERIES_COLOURS", "TERM_COLOURS", "TERM_LABELS", "TERMS", "as_document", "attention_figure",
    "attention_grid", "comparison_figure", "describe", "difference_figure", "difference_values",
    "knockout_layers", "layer_correlations", "message_figure", "own_terms_figure", "pearson", "question_figure",
    "relative_depth", "run_layers", "shade_window", "shared_y_max", "stacked_figure", "task_overlay_figure",
    "task_series", "term_values",
]
