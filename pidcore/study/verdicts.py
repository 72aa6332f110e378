"""What a study found: the seed paper's claims (a)-(e) turned into tests the study evaluates per recipe, each
with its estimate, 95% interval and a verdict: "supported", "not supported" or "inconclusive at this n"
("not tested" where the study lacks what a claim needs: two models for (d), the image->question cut for (e)).

Intervals come from the analyses' own bootstrap draws (the same resampled questions at every layer of a run,
and in the baseline and knockout runs of a task: pidcore.pipeline.layerwise), so a statistic built from several layers
(a peak, a maximum share, a correlation) gets a paired interval: the statistic of every draw, reflected about
the estimate (pidcore.estimators.estimate.interval; plain percentiles for the plug-in estimator). Without draws
(bootstrap 0) every claim is inconclusive. The rules are written down in docs/study.md ("Findings").
All information quantities are bits; shares are fractions of a layer's total I(X_vision, X_language; Y).
"""

from __future__ import annotations

import numpy as np

from pidcore.estimators.estimate import interval

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTED = "supported", "not supported", "inconclusive", "not tested"
COLUMNS = {"redundancy": 0, "unique_vision": 1, "unique_language": 2, "synergy": 3, "total": 4}
TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")
PAPER = {"unique_language_share": 0.82, "unique_language_band": (0.72, 0.92), "max_synergy_share": 0.02,
         "correlation": 0.96}
MAX_SHARE_WIDTH = 0.40  # (b): an interval wider than twice the 72-92% band cannot tell it from its neighbours
CLAIMS = {
    "a": "U_vision peaks in the first third of the depth and decays",
    "b": "U_language is about 82% of the last layer's information (72-92%)",
    "c": "synergy stays below 2% of the information at every layer",
    "d": "layer trajectories correlate above 0.96 across models",
    "e": "the image->question cut raises trapped U_vision, compensatory synergy and information cost, most in "
         "the tasks that depend most on vision",
}


def _draws(layers: list[dict]) -> np.ndarray | None:
    """(layers, rounds, 5) bootstrap draws, or None when any layer has none."""
    if not layers or not all(layer.get("draws") for layer in layers):
        return None
    return np.array([layer["draws"] for layer in layers], dtype=float)


def _values(layers: list[dict], term: str) -> np.ndarray:
    return np.array([float(layer[term]) for layer in layers])


def _ci(estimate: float, draws: np.ndarray | None, estimator: str) -> list[float] | None:
    if draws is None:
        return None
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) < 2:
        return None
    return [float(v) for v in interval(float(estimate), draws, estimator)]


def _verdict(ci: list[float] | None, low: float | None = None, high: float | None = None) -> str:
    """Supported when the interval lies inside (low, high) (either bound may be open), not supported when it
    lies wholly outside, inconclusive when it straddles a bound (or there is no interval)."""
    if ci is None:
        return INCONCLUSIVE
    lo, hi = ci
    inside = (low is None or lo > low) and (high is None or hi < high)
    outside = (low is not None and hi < low) or (high is not None and lo > high)
    return SUPPORTED if inside else NOT_SUPPORTED if outside else INCONCLUSIVE


def early_layers(count: int) -> list[int]:
    """Pooled layers in the first third of the depth: relative depth layer / (count - 1) <= 1/3."""
    last = max(count - 1, 1)
    return [index for index in range(count) if index / last <= 1 / 3 + 1e-12]


def claim_a(layers: list[dict], estimator: str) -> dict:
    """(a) U_vision peaks in the first third and decays. Two paired statistics: the peak margin (the
    largest U_vision of the first third minus the largest after it) and the decay (that early peak minus
    the last layer's U_vision). Supported when both intervals are above 0; not supported when either is
    below 0 (a later layer clearly higher, or the last layer clearly above the early peak)."""
    u = _values(layers, "unique_vision")
    early = early_layers(len(u))
    late = [index for index in range(len(u)) if index not in early]
    draws = _draws(layers)
    margin = float(u[early].max() - u[late].max())
    decay = float(u[early].max() - u[-1])
    margin_ci = decay_ci = None
    if draws is not None:
        dv = draws[:, :, COLUMNS["unique_vision"]]  # (layers, rounds)
        margin_ci = _ci(margin, dv[early].max(axis=0) - dv[late].max(axis=0), estimator)
        decay_ci = _ci(decay, dv[early].max(axis=0) - dv[-1], estimator)
    parts = (_verdict(margin_ci, low=0.0), _verdict(decay_ci, low=0.0))
    verdict = (SUPPORTED if parts == (SUPPORTED, SUPPORTED)
               else NOT_SUPPORTED if NOT_SUPPORTED in parts else INCONCLUSIVE)
    peak = int(np.argmax(u))
    return {"verdict": verdict, "estimate": margin, "ci": margin_ci, "unit": "bits",
            "quantity": "largest U_vision in the first third minus the largest after it",
            "detail": {"peak_layer": int(layers[peak]["layer"]), "relative_depth": peak / max(len(u) - 1, 1),
                       "first_third_layers": [int(layers[i]["layer"]) for i in early],
                       "decay_bits": decay, "decay_ci": decay_ci, "margin_verdict": parts[0],
                       "decay_verdict": parts[1]}}


def claim_b(layers: list[dict], estimator: str) -> dict:
    """(b) U_language's share of the last layer's total. Supported when its interval overlaps 72-92% and is at
    most 40 points wide; not supported when it lies wholly outside 72-92%; else inconclusive."""
    last = layers[-1]
    total = float(last["total"])
    if total <= 0:
        return {"verdict": INCONCLUSIVE, "estimate": None, "ci": None, "unit": "share",
                "quantity": "U_language / total at the last layer", "detail": {"reason": "no information at the "
                                                                                          "last layer"}}
    share = float(last["unique_language"]) / total
    draws = _draws(layers)
    share_ci = None
    if draws is not None:
        d = draws[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            share_ci = _ci(share, np.where(d[:, 4] > 0, d[:, 2] / d[:, 4], np.nan), estimator)
    low, high = PAPER["unique_language_band"]
    if share_ci is None:
        verdict = INCONCLUSIVE
    elif share_ci[1] < low or share_ci[0] > high:
        verdict = NOT_SUPPORTED
    elif share_ci[1] - share_ci[0] <= MAX_SHARE_WIDTH:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return {"verdict": verdict, "estimate": share, "ci": share_ci, "unit": "share",
            "quantity": "U_language / total at the last layer", "detail": {"paper": PAPER["unique_language_share"],
                                                                           "band": [low, high]}}


def claim_c(layers: list[dict], estimator: str) -> dict:
    """(c) Synergy's largest share over the layers (layers with information). Supported when its interval is
    below 2%, not supported when above, else inconclusive."""
    totals = _values(layers, "total")
    keep = [index for index, total in enumerate(totals) if total > 0]
    if not keep:
        return {"verdict": INCONCLUSIVE, "estimate": None, "ci": None, "unit": "share",
                "quantity": "largest synergy / total over the layers", "detail": {"reason": "no information"}}
    shares = _values(layers, "synergy")[keep] / totals[keep]
    top = int(np.argmax(shares))
    estimate = float(shares[top])
    draws = _draws(layers)
    top_ci = None
    if draws is not None:
        d = draws[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(d[:, :, 4] > 0, d[:, :, 3] / d[:, :, 4], -np.inf)
        top_ci = _ci(estimate, per.max(axis=0), estimator)
    return {"verdict": _verdict(top_ci, high=PAPER["max_synergy_share"]), "estimate": estimate, "ci": top_ci,
            "unit": "share", "quantity": "largest synergy / total over the layers",
            "detail": {"layer": int(layers[keep[top]]["layer"]), "paper": PAPER["max_synergy_share"]}}


def _on_depth(values: np.ndarray, points: int) -> np.ndarray:
    """Trajectories (last axis: layers) on `points` equal relative depths; unchanged when already that long."""
    if values.shape[-1] == points:
        return values
    grid, own = np.linspace(0, 1, points), np.linspace(0, 1, values.shape[-1])
    return np.apply_along_axis(lambda row: np.interp(grid, own, row), -1, values)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))


def claim_d(first: list[dict], second: list[dict], estimator: str) -> dict:
    """(d) Cross-model Pearson r of each term's baseline trajectory (layer index where depths are equal,
    relative depth otherwise), with bootstrap intervals (draw i of one model with draw i of the other: the
    same resampled questions when the models answered the same ones). Supported when every term's interval
    is above 0.96, not supported when any is below, else inconclusive; a term whose trajectory barely varies
    (its range inside its own noise) has no r and makes the claim inconclusive."""
    points = max(len(first), len(second))
    da, db = _draws(first), _draws(second)
    paired = da is not None and db is not None and da.shape[1] == db.shape[1]
    terms, verdicts = {}, []
    for term in (*TERMS, "total"):
        a = _on_depth(_values(first, term), points)
        b = _on_depth(_values(second, term), points)
        r = float(_pearson_rows(a, b)) if np.ptp(a) > 0 and np.ptp(b) > 0 else None
        ci = None
        if paired:
            column = COLUMNS[term]
            xa = _on_depth(da[:, :, column].T, points)  # (rounds, points)
            xb = _on_depth(db[:, :, column].T, points)
            flat = min(np.ptp(a), np.ptp(b)) <= 2 * max(np.std(xa, axis=0).max(), np.std(xb, axis=0).max())
            if flat:
                r = None
            elif r is not None:
                ci = _ci(r, _pearson_rows(xa, xb), estimator)
                ci = [max(-1.0, ci[0]), min(1.0, ci[1])] if ci else None
        verdict = INCONCLUSIVE if r is None else _verdict(ci, low=PAPER["correlation"])
        terms[term] = {"r": r, "ci": ci, "verdict": verdict}
        verdicts.append(verdict)
    verdict = (NOT_SUPPORTED if NOT_SUPPORTED in verdicts else SUPPORTED if all(v == SUPPORTED for v in verdicts)
               else INCONCLUSIVE)
    lowest = min((t for t in terms.values() if t["r"] is not None), key=lambda t: t["r"], default=None)
    return {"verdict": verdict, "estimate": None if lowest is None else lowest["r"],
            "ci": None if lowest is None else lowest["ci"], "unit": "r",
            "quantity": "the lowest term's Pearson r of the baseline trajectories",
            "detail": {"terms": terms, "axis": "layer index" if len(first) == len(second) else "relative depth",
                       "paper": PAPER["correlation"]}}


def claim_e(cuts: list[dict]) -> dict:
    """(e) Under the image->question cut (one knockout row per task, with its paired intervals): each of
    trapped U_vision, compensatory synergy and information cost rises (interval above 0) in the task that
    depends most on vision, ranked by the cut's drop in the probability of the right answer (largest drop
    first); and the most vision-dependent task's effects exceed the least's. Supported when the three rise
    in the top task and, with two tasks or more, each metric's interval there lies above the bottom task's;
    not supported when any of the three falls clearly there (interval below 0) or the bottom task's clearly
    exceeds the top's; else inconclusive."""
    metrics = ("trapped_unique_vision", "compensatory_synergy", "information_cost")
    if not cuts:
        return {"verdict": NOT_TESTED, "estimate": None, "ci": None, "unit": "bits", "quantity": "",
                "detail": {"reason": "the study has no image->question cut (seed_cut false)"}}
    ranked = sorted(cuts, key=lambda row: (row.get("answer_probability_change") or 0.0))  # largest drop first
    top, bottom = ranked[0], ranked[-1]
    rises = {name: _verdict((top.get("intervals") or {}).get(name), low=0.0) for name in metrics}
    order = {}
    if len(ranked) > 1:
        for name in metrics:
            t, b = (top.get("intervals") or {}).get(name), (bottom.get("intervals") or {}).get(name)
            order[name] = (INCONCLUSIVE if not t or not b else SUPPORTED if t[0] > b[1]
                           else NOT_SUPPORTED if t[1] < b[0] else INCONCLUSIVE)
    verdicts = [*rises.values(), *order.values()]
    verdict = (NOT_SUPPORTED if NOT_SUPPORTED in verdicts else SUPPORTED if all(v == SUPPORTED for v in verdicts)
               else INCONCLUSIVE)
    ranking = [{"task": row["task"], "answer_probability_change": row.get("answer_probability_change"),
                "answer_probability_change_ci": (row.get("intervals") or {}).get("answer_probability_change"),
                **{name: row.get(name) for name in metrics},
                **{f"{name}_ci": (row.get("intervals") or {}).get(name) for name in metrics}} for row in ranked]
    return {"verdict": verdict, "estimate": top.get("trapped_unique_vision"),
            "ci": (top.get("intervals") or {}).get("trapped_unique_vision"), "unit": "bits",
            "quantity": f"trapped U_vision in the most vision-dependent task ({top['task']})",
            "detail": {"ranking": ranking, "ranked_by": "the cut's drop in the mean probability of the right answer",
                       "rises_in_top_task": rises, "top_over_bottom": order}}


def disagreement(rows: list[dict]) -> str | None:
    """Why two recipes' verdicts on one model x task differ, in a sentence (None when they agree)."""
    by_recipe = {row["recipe"]: row for row in rows}
    if len(by_recipe) < 2:
        return None
    def apart(claim: str) -> bool:  # different verdicts, or intervals that do not overlap
        if len({row["claims"][claim]["verdict"] for row in rows}) > 1:
            return True
        cis = [row["claims"][claim].get("ci") for row in rows]
        return all(cis) and max(ci[0] for ci in cis) > min(ci[1] for ci in cis)

    differ = [claim for claim in "abc" if apart(claim)]
    if not differ:
        return None
    reasons = []
    measures = {recipe: row["measure"] for recipe, row in by_recipe.items()}
    if "mmi" in measures.values() and len(set(measures.values())) > 1:
        reasons.append("the seed recipe's MMI sets redundancy to the smaller of I(X_vision;Y) and I(X_language;Y), "
                       "so the weaker source's unique information is 0 by construction at every layer")
    dims = {recipe: row["dims"] for recipe, row in by_recipe.items()}
    if len({tuple(d) for d in dims.values()}) > 1:
        reasons.append("the recipes keep different PCA sizes (" + "; ".join(
            f"{recipe}: vision {d[0]}, language {d[1]}, target {d[2]}" for recipe, d in dims.items()) + ")")
    values = "; ".join(f"({claim}) " + " vs ".join(
        f"{recipe} {_fmt(row['claims'][claim].get('estimate'), row['claims'][claim].get('unit', 'bits'))}"
        for recipe, row in by_recipe.items()) for claim in differ)
    return (f"The recipes disagree on {values}: " + ("; ".join(reasons) if reasons else
                                                   "their Gaussianization differs") + ".")


def findings(report: dict, analyses: dict) -> dict:
    """The findings section of a report: per model x task x recipe, claims (a)-(c) on the baseline; (d) per
    task x recipe x model pair; (e) per model x recipe over tasks; the recipes' disagreements explained.
    `analyses`: (model, task, recipe, run key) -> analysis record (with the layers' bootstrap draws)."""
    request = report["request"]
    estimator = request.get("estimator", "corrected")
    rows = []
    for head in report["headline"]:
        base = analyses[(head["model"], head["task"], head["recipe"], "baseline")]["layers"]
        cuts = [k for k in report["knockouts"] if k["kind"] == "seed_cut" and k["model"] == head["model"]
                and k["recipe"] == head["recipe"]]
        rows.append({"model": head["model"], "task": head["task"], "recipe": head["recipe"],
                     "n_questions": head["n_questions"], "measure": head["measure"], "dims": head["dims"],
                     "claims": {"a": claim_a(base, estimator), "b": claim_b(base, estimator),
                                "c": claim_c(base, estimator)},
                     "bootstrap": bool(_draws(base) is not None)})
    pairs = []
    models = list(request["models"])
    for index, model_a in enumerate(models):
        for model_b in models[index + 1:]:  # in the request's order, as report["correlations"]
            for task in request["tasks"]:
                for recipe in request["recipes"]:
                    first = analyses.get((model_a, task, recipe, "baseline"))
                    second = analyses.get((model_b, task, recipe, "baseline"))
                    if first and second:
                        pairs.append({"models": [model_a, model_b], "task": task, "recipe": recipe,
                                      "claim": claim_d(first["layers"], second["layers"], estimator)})
    cut_rows = []
    for model in request["models"]:
        for recipe in request["recipes"]:
            cuts = [k for k in report["knockouts"] if k["kind"] == "seed_cut" and k["model"] == model
                    and k["recipe"] == recipe]
            cut_rows.append({"model": model, "recipe": recipe, "claim": claim_e(cuts)})
    from pidcore.study.checks import answer_bound_caution

    clusters = {(part["model"], part["task"]): part.get("target_clusters") for part in report["parts"]}
    cautions = []
    for head in report["headline"]:  # totals above what the answer can carry (pidcore.study.checks)
        base = analyses[(head["model"], head["task"], head["recipe"], "baseline")]["layers"]
        said = answer_bound_caution(base, clusters.get((head["model"], head["task"])), head["dims"][2])
        if said:
            cautions.append({"model": head["model"], "task": head["task"], "recipe": head["recipe"], **said})
    notes = []
    for model in request["models"]:
        for task in request["tasks"]:
            said = disagreement([row for row in rows if row["model"] == model and row["task"] == task])
            if said:
                notes.append({"model": model, "task": task, "text": said})
    return {"claims": dict(CLAIMS), "baseline": rows, "correlations": pairs, "cut": cut_rows,
            "disagreements": notes, "cautions": cautions,
            "not_tested": ([] if len(request["models"]) > 1 else ["d: one model"])
            + ([] if request.get("seed_cut") else ["e: no image->question cut"])}


def _fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "share":
        return f"{100 * value:.1f}%"
    if unit == "r":
        return f"{value:.3f}"
    return f"{value:+.3f} bits" if abs(value) >= 0.0005 else f"{value:+.1e} bits"


def claim_text(claim: dict) -> str:
    """'verdict: estimate [lo, hi]' in plain words (the CI in the claim's unit)."""
    verdict = claim["verdict"] + (" at this n" if claim["verdict"] == INCONCLUSIVE else "")
    if claim.get("estimate") is None:
        reason = (claim.get("detail") or {}).get("reason")
        return verdict + (f" ({reason})" if reason else "")
    ci = claim.get("ci")
    bounds = f" [{_fmt(ci[0], claim['unit'])}, {_fmt(ci[1], claim['unit'])}]" if ci else " (no interval: bootstrap 0)"
    return f"{verdict}: {claim['quantity']} {_fmt(claim['estimate'], claim['unit'])}{bounds}"


def summary_lines(found: dict) -> list[str]:
    """The findings in plain lines (the CLI's summary, the top of the HTML)."""
    lines = []
    for row in found["baseline"]:
        lines.append(f"{row['model']} · {row['task']} · {row['recipe']} (n = {row['n_questions']}):")
        for key in "abc":
            lines.append(f"  ({key}) {CLAIMS[key]}: {claim_text(row['claims'][key])}")
    for pair in found["correlations"]:
        lines.append(f"(d) {' vs '.join(pair['models'])} · {pair['task']} · {pair['recipe']}: "
                     f"{claim_text(pair['claim'])}")
    for row in found["cut"]:
        claim = row["claim"]
        ranking = ", ".join(r["task"] for r in (claim.get("detail") or {}).get("ranking", []))
        ranked = f" (tasks by the cut's drop in answer probability: {ranking})" if ranking else ""
        lines.append(f"(e) {row['model']} · {row['recipe']}: {claim_text(claim)}{ranked}")
    for note in found["disagreements"]:
        lines.append(f"{note['model']} · {note['task']}: {note['text']}")
    for caution in found.get("cautions") or []:
        lines.append(f"caution, {caution['model']} · {caution['task']} · {caution['recipe']}: {caution['text']}")
    return lines
