"""What the dashboard calls things: plain names and one-line help for every option and metric, the
sentence under each plot, and number formatting. Pure functions over result documents; no Dash here."""

from __future__ import annotations

import re

from pidcore.plot import fmt  # noqa: F401 - the dashboard's numbers are the figures' (never "-0.000")

TERM_NAMES = {"redundancy": "Shared (redundancy)", "unique_vision": "Vision only (unique vision)",
              "unique_language": "Language only (unique language)", "synergy": "Only together (synergy)",
              "total": "Total"}
TERM_HELP = {
    "redundancy": "information about the answer that vision and language each carry on their own (bits)",
    "unique_vision": "information about the answer that only the image representation carries (bits)",
    "unique_language": "information about the answer that only the question representation carries (bits)",
    "synergy": "information about the answer available only from vision and language together (bits)",
    "total": "all the information both representations carry about the answer: the sum of the four (bits)",
}

OPTION_HELP = {
    "model": "The vision-language model whose layers are analysed; demo is the small bundled one.",
    "dataset": "Where the questions and images come from.",
    "tasks": "Question kinds to analyse; each task gets its own questions.",
    "n-questions": "How many questions per task. More questions: less small-sample bias, longer run.",
    "pooling": "How the question's tokens become one vector per layer: their mean, or the last token.",
    "target": "Y, what the information is about: the model's answer log-probabilities (reduced to a few "
              "principal components), or its final hidden state at the answer position.",
    "measure": "How redundancy is defined. BROJA (default) splits information exactly for Gaussians; MMI takes "
               "redundancy = the smaller of the two sources' information (the seed paper's choice).",
    "dims": "Principal components kept per variable (vision, language, target). The bias grows with "
            "(vision + language) x target / questions.",
    "gaussianize": "Reshape each variable to be closer to Gaussian before the closed-form PID (normal scores, "
                   "or normalizing flows when they fit better). Slower, usually more faithful.",
    "bootstrap": "Resamples for confidence bands; 0 for none. Each resample refits the PID: cost grows linearly.",
    "knockout": "Block attention from one token group to another in a window of decoder layers, and compare "
                "with the unblocked (baseline) run.",
    "mode": "Bits: absolute information. Fraction: each part as a share of its layer's total.",
}

EFFECT_NAMES = {
    "trapped_unique_vision": ("vision-only information left in late layers",
                              "mean change of vision-only information over the last third of layers (bits)"),
    "compensatory_synergy": ("synergy gained after the window",
                             "mean change of synergy over the layers the knockout can reach (bits)"),
    "information_cost": ("total information lost",
                         "mean drop of the total over the layers the knockout can reach (bits)"),
    "late_layers": ("late layers (last third)", "layers averaged for the vision-only figure"),
    "reached_layers": ("layers the knockout can reach (first, last: every layer from the one to the other)",
                       "first and last layer after the window's start"),
    "answer_probability_change": ("answer probability change", "knockout - baseline, mean p(gold answer)"),
    "answer_probability_change_pct": ("answer probability change (%)", "relative to the baseline mean"),
    "accuracy_change": ("accuracy change", "knockout - baseline, share of questions answered right"),
    "accuracy": ("accuracy change", "knockout - baseline, share of questions answered right"),
    "mean_p_correct": ("answer probability change", "knockout - baseline, mean p(gold answer)"),
}

VARIABLE_NAMES = {"x1": "vision", "x2": "language", "y": "target"}
_VARIABLE = re.compile(r"\b(x1|x2|y)\b(?=\s*[(:])")


def plain_note(text: str) -> str:
    """An estimator note in the dashboard's words: x1/x2/y named vision/language/target."""
    return _VARIABLE.sub(lambda match: VARIABLE_NAMES[match.group(1)], text)


def target_sentence(document: dict) -> str:
    """What Y is and what the bits are about, from the analysis's request."""
    request = (document or {}).get("request") or {}
    dims = request.get("dims") or []
    k = dims[2] if len(dims) == 3 else None
    components = "the first principal component" if k == 1 else \
        f"the first {k} principal components" if k else "principal components"
    if request.get("target", "logprobs") == "hidden":
        what = f"Y is {components} of the model's final hidden state at the answer position"
    else:
        what = (f"Y is {components} of the model's log-probabilities over the dataset's answers, so a "
                f"total can exceed the answer's entropy")
    return f"Bits of information about the answer: {what}. Layer 0 is the embeddings."


def difference_sentence(document: dict) -> str:
    """The caption of the difference plot: what its values and bands are (not the stacked plots' caption)."""
    per_layer = ((document or {}).get("effects") or {}).get("per_layer") or []
    banded = any((entry or {}).get("ci") for entry in per_layer)
    bands = ("Bands are paired 95% intervals: both runs resampled on the same questions, so they are the "
             "uncertainty of the change itself, narrower than the two runs' own bands combined. "
             if banded else "No bands: this analysis has no bootstrap resamples. ")
    return ("Knockout minus baseline per layer, in bits of information about the answer. " + bands +
            "Layers before the knockout window are the same in both runs, so their change is exactly zero.")


def method_note(document: dict) -> str | None:
    """One line on what the numbers are and how good they are, from the result's ``estimates`` statement
    (pidcore.pipeline.analysis.estimates_statement), or its own method text when an older result has one."""
    estimates = (document or {}).get("estimates")
    if isinstance(estimates, dict) and estimates.get("estimator"):
        if estimates["estimator"] == "corrected":
            text = "Bias-corrected estimates (small-sample bias removed; a part whose truth is 0 can show slightly below 0)."
        else:
            text = "Plug-in estimates, not bias-corrected: biased upward at small samples."
        if estimates.get("intervals"):
            text += (" Bands: 95% bootstrap intervals over the questions (sampling noise given the fitted PCA and "
                     "Gaussianization; on known systems they held the truth in 87-100% of runs, mostly 90-97%). With "
                     "at least half as many features as questions the parts are corrected for the sample PCA's tilt "
                     "into the noise; what lies near or below the noise edge stays lost and the bands leave out the "
                     "PCA's refit: such layers say so (pca-loss).")
        else:
            text += " No intervals: bootstrap was 0."
        if estimates.get("knockout_target"):
            text += (" Knockout run measured against the baseline's Y." if "baseline" in estimates["knockout_target"]
                     else " Knockout run measured against its own Y.")
        return text
    for key in ("method", "estimator", "method_statement"):
        value = (document or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict):
            text = value.get("statement") or value.get("text") or value.get("summary")
            if isinstance(text, str) and text.strip():
                return text.strip()
    return None


def knockout_window(document: dict) -> str | None:
    """The knockout in words: "image->question blocked in decoder layers 1-3", or None without one."""
    knockout = ((document or {}).get("request") or {}).get("knockout") or {}
    edges, layers = knockout.get("edges"), knockout.get("layers")
    if not edges:
        return None
    where = f" in decoder layers {layers[0]}-{layers[1]}" if layers and len(layers) == 2 else ""
    return f"{', '.join(edges)} attention blocked{where}"


def describe_export(document: dict, analysis_id: str | None, run: str | None = None) -> str:
    """A plot's export subtitle: model, tasks, run and analysis id."""
    request = (document or {}).get("request") or {}
    model = ((document or {}).get("model") or {}).get("name") or request.get("model", "?")
    parts = [str(model), ", ".join(request.get("tasks") or []) or "?"]
    if run:
        parts.append(run)
    if analysis_id:
        parts.append(f"analysis {analysis_id}")
    return " · ".join(parts)


def export_filename(document: dict, analysis_id: str | None, graph_id: str) -> str:
    """File name of a plot download: pidflow-<model>-<tasks>-<graph>-<id>, safe characters only."""
    request = (document or {}).get("request") or {}
    model = ((document or {}).get("model") or {}).get("name") or request.get("model", "model")
    raw = "-".join(["pidflow", str(model), "+".join(request.get("tasks") or []), graph_id, analysis_id or ""])
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", raw).strip("-_")
