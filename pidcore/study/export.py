"""A study report (pidflow.study/1) as JSON, CSV and one self-contained HTML page with its figures.

The HTML carries plotly.js inline (plotly.py's bundle, or the text passed as `plotly_js`, e.g. the
dashboard's vendored cartesian bundle): it opens offline, with no CDN.
"""

from __future__ import annotations

import csv
import html
import io
import json

from pidcore.study.figures import DELTA_TERMS, TERMS, small_multiples, sweep_cells, sweep_heatmap

CSV_COLUMNS = ("section", "model", "task", "recipe", "run", "centre", "layer", "quantity", "value", "lo", "hi")
EFFECTS = ("trapped_unique_vision", "compensatory_synergy", "information_cost", "answer_probability_change",
           "answer_probability_change_pct", "accuracy_change")


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1)


def csv_rows(report: dict):
    """Tidy rows (CSV_COLUMNS): headline quantities, question counts, cross-model correlations, knockout effects and every
    layer value of every run (bits; shares are fractions; lo/hi = interval bounds when the report has them)."""
    for row in report["headline"]:
        key = {"model": row["model"], "task": row["task"], "recipe": row["recipe"], "run": "baseline",
               "layer": row["last_layer"]}
        cis, share_cis = row.get("terms_ci_bits") or {}, row.get("shares_ci") or {}
        for term in TERMS:
            yield {"section": "headline", **key, "quantity": f"share_{term}", "value": row["shares"][term],
                   "lo": (share_cis.get(term) or [None])[0], "hi": (share_cis.get(term) or [None, None])[1]}
            yield {"section": "headline", **key, "quantity": f"{term}_bits", "value": row["terms_bits"][term],
                   "lo": (cis.get(term) or [None])[0], "hi": (cis.get(term) or [None, None])[1]}
        yield {"section": "headline", **key, "quantity": "total_bits", "value": row["total_bits"]}
        yield {"section": "headline", **key, "layer": row["unique_vision_peak_layer"],
               "quantity": "unique_vision_peak_bits", "value": row["unique_vision_peak_bits"]}
        yield {"section": "headline", **key, "layer": row["max_synergy_layer"], "quantity": "max_synergy_share",
               "value": row["max_synergy_share"]}
        yield {"section": "headline", **key, "layer": None, "quantity": "accuracy", "value": row["accuracy"]}
    for part in report["parts"]:  # questions per model x task: listed, asked, answered correctly, kept
        for name in ("n_listed", "n_asked", "n_correct", "n_kept"):
            if part.get(name) is not None:
                yield {"section": "questions", "model": part["model"], "task": part["task"], "quantity": name,
                       "value": part[name]}
    for row in report["correlations"]:
        for term in DELTA_TERMS:
            yield {"section": "correlation", "model": " vs ".join(row["models"]), "task": row["task"],
                   "recipe": row["recipe"], "quantity": f"pearson_{term}", "value": row[term]}
    for row in report["knockouts"]:
        key = {"model": row["model"], "task": row["task"], "recipe": row["recipe"], "run": row["run"],
               "centre": row["centre"]}
        for name in EFFECTS:
            bounds = (row.get("intervals") or {}).get(name) or [None, None]
            yield {"section": "knockout", **key, "quantity": name, "value": row.get(name), "lo": bounds[0],
                   "hi": bounds[1]}
        for entry in row["per_layer"]:
            for term in DELTA_TERMS:
                yield {"section": "knockout_delta", **key, "layer": entry["layer"], "quantity": f"delta_{term}",
                       "value": entry[term]}
    for series in report["series"]:
        key = {"model": series["model"], "task": series["task"], "recipe": series["recipe"], "run": series["run"],
               "centre": series["centre"]}
        for layer in series["layers"]:
            ci = layer.get("ci") or {}
            for term in DELTA_TERMS:
                bounds = ci.get(term) or [None, None]
                yield {"section": "layer", **key, "layer": layer["layer"], "quantity": f"{term}_bits",
                       "value": layer[term], "lo": bounds[0], "hi": bounds[1]}


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for row in csv_rows(report):
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    return out.getvalue()


def _number(value, digits: int = 3, percent: bool = False) -> str:
    """`digits` decimals; a change too small for them keeps one significant digit (-0.0004, not 0.000)."""
    if value is None:
        return "–"
    if percent:
        value = 100 * value
        digits = 1
    if value != 0 and abs(value) < 0.5 * 10 ** -digits:
        text = f"{value:.1g}"
    else:
        text = f"{value:.{digits}f}"
        text = "0." + "0" * digits if float(text) == 0 else text  # never -0.000
    return text + ("%" if percent else "")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _share_cell(row: dict, term: str) -> str:
    text = _number(row["shares"][term], percent=True)
    ci = (row.get("shares_ci") or {}).get(term)
    return text + (f" <small>[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</small>" if ci else "")


def headline_table(report: dict) -> str:
    """The seed's headline table, recipes side by side (one row per model x task x recipe)."""
    rows = []
    for row in sorted(report["headline"], key=lambda r: (r["model"], r["task"], r["recipe"])):
        rows.append([html.escape(row["model"]), html.escape(row["task"]), html.escape(row["recipe"]),
                     str(row["n_questions"]), *(_share_cell(row, term) for term in TERMS),
                     _number(row["total_bits"]), str(row["unique_vision_peak_layer"]),
                     f"{_number(row['max_synergy_share'], percent=True)} (layer {row['max_synergy_layer']})"])
    return _table(["model", "task", "recipe", "n", "R", "U_vision", "U_language", "S", "total (bits)",
                   "U_vision peak layer", "largest S share"], rows)


def counts_table(report: dict) -> str:
    """Questions per model x task: listed (an id list), asked, answered correctly, kept (all, or the correct
    ones with correct_only) and the accuracy."""
    accuracy = {(row["model"], row["task"]): row["accuracy"] for row in report["headline"]}
    rows = [[html.escape(part["model"]), html.escape(part["task"]),
             "" if part.get("n_listed") is None else str(part["n_listed"]), str(part["n_asked"]),
             str(part.get("n_correct", "")), str(part["n_kept"]), _number(accuracy.get((part["model"], part["task"])))]
            for part in report["parts"]]
    return _table(["model", "task", "listed ids found", "asked", "answered correctly", "kept", "baseline accuracy (kept)"], rows)


def correlation_table(report: dict) -> str:
    if not report["correlations"]:
        return "<p>One model only: no cross-model correlation.</p>"
    rows = [[html.escape(" vs ".join(row["models"])), html.escape(row["task"]), html.escape(row["recipe"]),
             *(_number(row[term]) for term in DELTA_TERMS)] for row in report["correlations"]]
    return _table(["models", "task", "recipe", "r(R)", "r(U_vision)", "r(U_language)", "r(S)", "r(total)"], rows)


def _with_interval(row: dict, name: str, digits: int = 3) -> str:
    interval = (row.get("intervals") or {}).get(name)
    text = _number(row.get(name), digits)
    return text + (f" <small>[{_number(interval[0], digits)}, {_number(interval[1], digits)}]</small>" if interval
                   else "")


def sweep_note(report: dict) -> str:
    """What the sweep used per model: its window (at most a third of the decoder) and why it differs from k."""
    said = {}
    for part in report.get("parts", []):
        used = part.get("sweep")
        if used and part["model"] not in said:
            said[part["model"]] = (f"{html.escape(part['model'])}: windows of {used['k_used']} decoder layers "
                                   f"({html.escape(used['reason'])})")
    return f"<p class='note'>Sweep: {'; '.join(said.values())}.</p>" if said else ""


def knockout_table(report: dict) -> str:
    if not report["knockouts"]:
        return "<p>No knockout runs in this study.</p>"
    rows = [[html.escape(k["model"]), html.escape(k["task"]), html.escape(k["recipe"]), html.escape(k["run"]),
             html.escape("+".join(k["edges"])), f"{k['window'][0]}–{k['window'][1]}",
             "" if k["centre"] is None else str(k["centre"]),
             *(_with_interval(k, name) for name in ("trapped_unique_vision", "compensatory_synergy", "information_cost")),
             _with_interval(k, "answer_probability_change_pct", 1), _with_interval(k, "accuracy_change")]
            for k in report["knockouts"]]
    negative = [k for k in report["knockouts"] if (k.get("information_cost") or 0) < 0]
    note = ("<p class='note'>A negative information cost means the knocked-out run carries <i>more</i> "
            "information about the answer than the baseline in the layers the cut reaches (with the baseline's Y "
            f"as the target); {len(negative)} of {len(report['knockouts'])} runs here. Brackets: paired 95% "
            f"intervals (the same resampled questions in both runs). {_INTERVALS_LEAVE_OUT}</p>") if negative else (
        f"<p class='note'>Brackets: paired 95% intervals (the same resampled questions in both runs). "
        f"{_INTERVALS_LEAVE_OUT}</p>")
    return _table(["model", "task", "recipe", "run", "edges", "window", "centre", "trapped U_v (bits)",
                   "compensatory S (bits)", "information cost (bits)", "Δp(answer) %", "Δaccuracy"], rows) + note


#: What every interval of the report leaves out (the same words as the dashboard's caption).
_INTERVALS_LEAVE_OUT = ("They cover the questions' sampling noise given the fitted PCA and Gaussianization; with at "
                        "least half as many features as questions the parts are corrected for the sample PCA's tilt "
                        "into the noise, but what lies near or below the noise edge stays lost and the intervals "
                        "leave out the PCA's refit (pca-loss warnings in the analyses).")


def _verdict_cell(claim: dict) -> str:
    """A claim's verdict (coloured), estimate and interval, in words (pidcore.study.verdicts.claim_text)."""
    from pidcore.study.verdicts import claim_text

    verdict, _, rest = claim_text(claim).partition(": ")
    css = claim["verdict"].replace(" ", "-")
    return f"<span class='verdict {css}'>{html.escape(verdict)}</span>" + (
        f"<br><small>{html.escape(rest)}</small>" if rest else "")


def findings_html(report: dict) -> str:
    """The top of the page: the seed paper's claims (a)-(e) as tests with verdicts and intervals, per recipe,
    and why recipes disagree (pidcore.study.verdicts; the rules are in docs/study.md)."""
    found = report.get("findings")
    if not found:
        return ""
    claims = found["claims"]
    legend = "".join(f"<li><b>({key})</b> {html.escape(text)}</li>" for key, text in claims.items())
    rows = [[html.escape(row["model"]), html.escape(row["task"]), html.escape(row["recipe"]), str(row["n_questions"]),
             *(_verdict_cell(row["claims"][key]) for key in "abc")] for row in found["baseline"]]
    parts = [f"<ul class='claims'>{legend}</ul>",
             _table(["model", "task", "recipe", "n", "(a) U_vision early peak", "(b) U_language share",
                     "(c) largest synergy share"], rows)]
    if found["correlations"]:
        parts.append(_table(["models", "task", "recipe", "(d) cross-model r"], [
            [html.escape(" vs ".join(pair["models"])), html.escape(pair["task"]), html.escape(pair["recipe"]),
             _verdict_cell(pair["claim"])] for pair in found["correlations"]]))
    for row in found["cut"]:
        claim = row["claim"]
        ranking = (claim.get("detail") or {}).get("ranking") or []
        order = ", ".join(f"{html.escape(r['task'])} (Δp {_number(r['answer_probability_change'])})" for r in ranking)
        parts.append(f"<p><b>(e)</b> {html.escape(row['model'])} · {html.escape(row['recipe'])}: "
                     f"{_verdict_cell(claim)}" + (f"<br><small>tasks ranked by the cut's drop in the probability of "
                                                  f"the right answer: {order}</small>" if order else "") + "</p>")
    if found.get("not_tested"):
        parts.append(f"<p class='note'>Not tested by this study: {html.escape('; '.join(found['not_tested']))}.</p>")
    parts += [f"<p class='disagree'>{html.escape(note['model'])} · {html.escape(note['task'])}: "
              f"{html.escape(note['text'])}</p>" for note in found["disagreements"]]
    parts += [f"<p class='caution'><b>Caution</b>, {html.escape(c['model'])} · {html.escape(c['task'])} · "
              f"{html.escape(c['recipe'])}: {html.escape(c['text'])}</p>" for c in found.get("cautions") or []]
    return ("<h2>What the study found</h2><p class='note'>The seed paper's claims as tests, per recipe: "
            "<b>supported</b> when the 95% interval lies where the claim says, <b>not supported</b> when it lies "
            "wholly outside, <b>inconclusive at this n</b> when it straddles the line (or the study has no "
            "intervals: bootstrap 0). Intervals: the analyses' bootstrap draws (the same questions across layers "
            "and runs); rules in docs/study.md.</p>" + "".join(parts))


def _buttons(links: dict | None) -> str:
    if not links:
        return ""
    return "<p class='exports'>" + " ".join(f"<a class='button' href='{html.escape(url)}' download>{html.escape(label)}</a>"
                                            for label, url in links.items()) + "</p>"


def _back(back: tuple[str, str] | None) -> str:
    return "" if not back else f"<p class='back'><a href='{html.escape(back[1])}'>{html.escape(back[0])}</a></p>"


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
.verdict{font-weight:600;padding:0 4px;border-radius:3px}.verdict.supported{color:#fff;background:#009E73}
.verdict.not-supported{color:#fff;background:#D55E00}.verdict.inconclusive{background:#eee;color:#444}
.verdict.not-tested{color:#888}.disagree{font-size:13px;color:#444}.caution{font-size:13px;color:#8a4b00}ul.claims{font-size:13px}
table{border-collapse:collapse;margin:8px 0 24px;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:nth-child(-n+3){text-align:left}small{color:#666}
h2{margin-top:32px}.note{color:#555;font-size:13px}
a.button{display:inline-block;padding:6px 12px;border:1px solid #0072B2;border-radius:4px;color:#0072B2;
text-decoration:none;margin-right:6px}a.button:hover{background:#0072B2;color:#fff}"""


def to_html(report: dict, plotly_js: str | None = None, links: dict | None = None,
            back: tuple[str, str] | None = None) -> str:
    """One self-contained page: headline table (recipes side by side), correlations, knockout effects,
    small multiples per recipe and a sweep heatmap (term buttons) per model x task x recipe; `links`
    (label -> URL) become export buttons at the top and `back` (label, URL) a link above the title (the
    served study page)."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    request = report["request"]
    figures = []
    for recipe in request["recipes"]:
        figures.append(small_multiples(report, recipe))
    for model in request["models"]:
        for task in request["tasks"]:
            for recipe in request["recipes"]:
                if sweep_cells(report, model, task, recipe):
                    figures.append(sweep_heatmap(report, model, task, recipe, buttons=True))
    divs = [fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{index}")
            for index, fig in enumerate(figures)]
    recipes = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>"
                      for name, text in report["recipes"].items())
    summary = (f"{len(request['models'])} model(s) × {len(request['tasks'])} task(s), {request['n_questions']} "
               f"questions per task{' (correct only)' if request['correct_only'] else ''}, dataset "
               f"{html.escape(request['dataset'])}; code {html.escape(report['code_version'])}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pidflow study</title><style>{STYLE}</style>
<script>{plotly_js}</script></head><body>
{_back(back)}<h1>pidflow study</h1>{_buttons(links)}<p>{summary}</p><ul>{recipes}</ul>
{findings_html(report)}
<h2>Headline: shares of the last layer's information</h2>
<p class="note">Shares are fractions of the last layer's total I(X_vision, X_language; Y); brackets: the terms'
intervals divided by that total (when the analyses have intervals).</p>
{headline_table(report)}
<h2>Questions per model and task</h2>{counts_table(report)}
<h2>Cross-model correlation of layer trajectories (Pearson r)</h2>{correlation_table(report)}
<h2>Knockout effects (knockout − baseline)</h2>{sweep_note(report)}{knockout_table(report)}
<h2>Figures</h2>{''.join(divs)}
</body></html>
"""
