"""The findings section (issue 18.2) on synthetic studies built here: analysis records with known layer
trajectories and bootstrap draws, through pidcore.study.run.build_report. A study made to follow the seed paper's
pattern gets "supported" on (a)-(e), one made against it "not supported", a tiny one "inconclusive"."""

from __future__ import annotations

import numpy as np
import pytest

from pidcore.study.run import Run, build_report, default_request
from pidcore.study.verdicts import claim_text, disagreement, early_layers, summary_lines

LAYERS = 7  # a 6-decoder-layer model: pooled layers 0..6; the first third is 0, 1, 2
SEED_PATTERN = {  # bits per layer: U_v peaks early and decays, U_l ends at 82% of the total, S ~0.5%
    "redundancy": [0.20, 0.30, 0.35, 0.40, 0.42, 0.42, 0.42],
    "unique_vision": [0.30, 0.60, 0.50, 0.30, 0.15, 0.08, 0.06],
    "unique_language": [0.05, 0.10, 0.30, 0.80, 1.40, 2.00, 2.34],
    "synergy": [0.003, 0.005, 0.006, 0.008, 0.010, 0.012, 0.015],
}
AGAINST = {  # U_v rises to the last layer, U_l is 30% of it, synergy 20%
    "redundancy": [0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50],
    "unique_vision": [0.05, 0.10, 0.20, 0.35, 0.50, 0.65, 0.80],
    "unique_language": [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60],
    "synergy": [0.05, 0.08, 0.12, 0.20, 0.25, 0.35, 0.40],
}
NOISE = {"redundancy": 0.05, "unique_vision": 0.05, "unique_language": 0.05, "synergy": 0.004}  # sd at n = 900
TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")


def _layers(pattern: dict, n: int, rounds: int, rng, shift: dict | None = None, noise_of=None) -> list[dict]:
    """Layer entries (bits) with `rounds` bootstrap draws of sd NOISE * sqrt(900 / n) around the pattern."""
    shift = shift or {}
    scale = np.sqrt(900 / n)
    draws = np.zeros((LAYERS, rounds, 5))
    layers = []
    for index in range(LAYERS):
        values = {term: pattern[term][index] + shift.get(term, [0.0] * LAYERS)[index] for term in TERMS}
        for column, term in enumerate(TERMS):
            sd = (noise_of or NOISE)[term] * scale
            draws[index, :, column] = values[term] + rng.normal(0, sd, rounds)
        draws[index, :, 4] = draws[index, :, :4].sum(axis=1)
        layers.append({"layer": index, **values, "total": sum(values.values()), "draws": draws[index].tolist()})
    return layers


def _records(pattern: dict, n: int, drops: dict, cut_effect: float, second_model: dict, seed: int = 0) -> list[dict]:
    """Two models x two tasks, baseline + the seed's image->question cut, one recipe (pidflow)."""
    rng = np.random.default_rng(seed)
    runs = [Run("baseline", "baseline"), Run("seed-cut", "seed_cut", {"edges": ["image->question"], "layers": [0, 5]})]
    records = []
    for model, pattern_of_model in (("m1", pattern), ("m2", second_model)):
        for task in ("color", "shape"):
            base = _layers(pattern_of_model, n, 40, rng)
            effect = cut_effect * (1.0 if task == "color" else 0.2)  # color depends most on vision
            reached = [0.0] + [1.0] * (LAYERS - 1)
            late = [0.0] * 4 + [1.0] * 3
            shift = {"unique_vision": [effect * x for x in late], "synergy": [0.5 * effect * x for x in reached],
                     "unique_language": [-2.0 * effect * x for x in reached]}
            knocked = []
            for entry, knock in zip(base, _layers(pattern_of_model, n, 40, rng, shift), strict=True):
                # the same resampled questions in both runs: the baseline's draws, moved by the effect, plus
                # the knockout's own (smaller) noise
                own = rng.normal(0, 0.5 * NOISE["unique_vision"] * np.sqrt(900 / n), (40, 4))
                paired = np.array(entry["draws"]) + (np.array([knock[t] for t in (*TERMS, "total")])
                                                      - np.array([entry[t] for t in (*TERMS, "total")]))
                paired[:, :4] += own
                paired[:, 4] = paired[:, :4].sum(axis=1)
                knocked.append({**knock, "draws": paired.tolist()})
            p_base = np.full(n, 0.9)
            p_knock = np.clip(p_base - drops[task] + rng.normal(0, 0.05, n), 0, 1)
            analysis = {"measure": "broja", "dims": [8, 8, 4], "bootstrap": 40, "seed": 0, "estimator": "corrected"}
            for key, layers, p in (("baseline", base, p_base), ("image->question@0-5", knocked, p_knock)):
                records.append({"type": "analysis", "model": model, "task": task, "recipe": "pidflow", "key": key,
                                "analysis": analysis, "n_questions": n, "accuracy": float(np.mean(p > 0.5)),
                                "mean_p_correct": float(p.mean()), "p_correct": p.tolist(),
                                "correct": (p > 0.5).tolist(), "layers": layers})
            records.append({"type": "part", "model": model, "task": task, "runs": [r.to_dict() for r in runs],
                            "n_asked": n, "n_correct": n, "n_kept": n, "n_listed": None, "seed_dims": None,
                            "model_info": {"num_layers": LAYERS - 1}})
    return records


def _study(records: list[dict], n: int) -> dict:
    request = default_request(models=["m1", "m2"], tasks=["color", "shape"], recipes=["pidflow"], sweep=None,
                              seed_cut=True, bootstrap=40, n_questions=n)
    return build_report(request, records)["findings"]


def _near(pattern: dict, wobble: float) -> dict:
    return {term: [v * (1 + wobble * np.sin(i)) for i, v in enumerate(values)] for term, values in pattern.items()}


def test_a_study_following_the_seed_pattern_is_supported():
    found = _study(_records(SEED_PATTERN, 900, {"color": 0.4, "shape": 0.05}, 0.3, _near(SEED_PATTERN, 0.03)), 900)
    assert len(found["baseline"]) == 4
    for row in found["baseline"]:
        verdicts = {key: claim["verdict"] for key, claim in row["claims"].items()}
        assert verdicts == {"a": "supported", "b": "supported", "c": "supported"}, (row["model"], row["task"], verdicts)
        b = row["claims"]["b"]
        assert b["estimate"] == pytest.approx(2.34 / 2.835, rel=1e-9) and b["ci"][0] < b["estimate"] < b["ci"][1]
        a = row["claims"]["a"]
        assert a["detail"]["peak_layer"] == 1 and a["detail"]["first_third_layers"] == [0, 1, 2]
    assert found["correlations"][0]["claim"]["detail"]["axis"] == "layer index"
    # (d) asks every term's r above 0.96: at n = 900 the redundancy's and synergy's r are not that sure yet
    terms = found["correlations"][0]["claim"]["detail"]["terms"]
    assert terms["unique_language"]["verdict"] == "supported" and terms["synergy"]["verdict"] == "inconclusive"
    large = _study(_records(SEED_PATTERN, 90_000, {"color": 0.4, "shape": 0.05}, 0.3, _near(SEED_PATTERN, 0.03)),
                   90_000)
    assert [pair["claim"]["verdict"] for pair in large["correlations"]] == ["supported", "supported"]
    cut = found["cut"][0]["claim"]
    assert cut["verdict"] == "supported", cut
    assert [row["task"] for row in cut["detail"]["ranking"]] == ["color", "shape"]  # color's answers fall most
    text = claim_text(found["baseline"][0]["claims"]["b"])
    assert text.startswith("supported: U_language / total at the last layer 82.5% [") and "%, " in text


def test_a_study_against_the_pattern_is_not_supported():
    found = _study(_records(AGAINST, 900, {"color": 0.05, "shape": 0.4}, -0.3, _near(AGAINST, 0.03)), 900)
    for row in found["baseline"]:
        verdicts = {key: claim["verdict"] for key, claim in row["claims"].items()}
        assert verdicts == {"a": "not supported", "b": "not supported", "c": "not supported"}, verdicts
        assert row["claims"]["a"]["detail"]["peak_layer"] == 6
        assert row["claims"]["c"]["estimate"] == pytest.approx(0.35 / 1.95, rel=1e-6)  # layer 5's share
    assert found["cut"][0]["claim"]["verdict"] == "not supported"
    reversed_model = {term: values[::-1] for term, values in AGAINST.items()}  # trajectories that run the other way
    found = _study(_records(AGAINST, 900, {"color": 0.05, "shape": 0.4}, -0.3, reversed_model), 900)
    assert {pair["claim"]["verdict"] for pair in found["correlations"]} == {"not supported"}


def test_a_tiny_study_is_inconclusive():
    found = _study(_records(SEED_PATTERN, 12, {"color": 0.1, "shape": 0.05}, 0.02, _near(SEED_PATTERN, 0.03)), 12)
    for row in found["baseline"]:
        assert {key: claim["verdict"] for key, claim in row["claims"].items()} == {
            "a": "inconclusive", "b": "inconclusive", "c": "inconclusive"}
    assert found["cut"][0]["claim"]["verdict"] == "inconclusive"
    lines = summary_lines(found)
    assert lines[0] == "m1 · color · pidflow (n = 12):"
    assert lines[1].startswith("  (a) U_vision peaks in the first third of the depth and decays: inconclusive at "
                               "this n: largest U_vision in the first third minus the largest after it")


def test_without_intervals_every_claim_is_inconclusive_and_says_why():
    records = _records(SEED_PATTERN, 900, {"color": 0.4, "shape": 0.05}, 0.3, SEED_PATTERN)
    for record in records:
        for layer in record.get("layers", []):
            layer.pop("draws")
    found = _study(records, 900)
    claims = found["baseline"][0]["claims"]
    assert {claim["verdict"] for claim in claims.values()} == {"inconclusive"}
    assert claim_text(claims["b"]).endswith("(no interval: bootstrap 0)")


def test_the_first_third_and_the_recipes_disagreement_in_words():
    assert early_layers(7) == [0, 1, 2] and early_layers(33) == list(range(11)) and early_layers(2) == [0]
    def claim(verdict, estimate=0.8, ci=None):
        return {"verdict": verdict, "estimate": estimate, "ci": ci, "unit": "share"}

    rows = [{"recipe": "pidflow", "measure": "broja", "dims": [8, 8, 4],
             "claims": {k: claim("supported", ci=[0.75, 0.85]) for k in "abc"}},
            {"recipe": "seed", "measure": "mmi", "dims": [40, 38, 7],
             "claims": {"a": claim("supported", ci=[0.75, 0.85]), "b": claim("not supported", 0.117, [0.082, 0.161]),
                        "c": claim("supported", ci=[0.75, 0.85])}}]
    said = disagreement(rows)
    assert said.startswith("The recipes disagree on (b) pidflow 80.0% vs seed 11.7%: the seed recipe's MMI sets "
                           "redundancy to the smaller of")
    assert "seed: vision 40, language 38, target 7" in said
    rows[1]["claims"]["b"] = claim("inconclusive", 0.3, [0.2, 0.4])  # the same verdict, intervals apart: said too
    rows[0]["claims"]["b"] = claim("inconclusive", 0.6, [0.5, 0.7])
    assert disagreement(rows).startswith("The recipes disagree on (b) pidflow 60.0% vs seed 30.0%")
    rows[1]["claims"]["b"] = claim("inconclusive", 0.55, [0.45, 0.65])  # overlapping: they agree
    assert disagreement(rows) is None


def test_tiny_changes_keep_a_significant_digit_and_negative_costs_are_explained():
    from pidcore.study.export import _number, knockout_table

    assert [_number(v) for v in (-0.0004, 0.0, -0.0, 0.25, 1.23456, None)] == ["-0.0004", "0.000", "0.000", "0.250",
                                                                               "1.235", "–"]
    assert _number(0.123, percent=True) == "12.3%" and _number(-0.0001, percent=True) == "-0.01%"
    row = {"model": "demo", "task": "color", "recipe": "pidflow", "run": "seed-cut", "edges": ["image->question"],
           "window": [0, 5], "centre": None, "trapped_unique_vision": 0.1, "compensatory_synergy": 0.0,
           "information_cost": -0.2, "answer_probability_change_pct": -0.04, "accuracy_change": -0.0004,
           "intervals": {"answer_probability_change_pct": [-0.06, -0.02], "accuracy_change": [-0.0009, 0.0001]}}
    table = knockout_table({"knockouts": [row]})
    assert "-0.0 <" not in table and "<td>-0.04 <small>[-0.1, -0.02]</small></td>" in table  # never "-0.0"
    assert "<td>-0.0004 <small>[-0.001, 0.0001]</small></td>" in table
    assert "A negative information cost means the knocked-out run carries <i>more</i> information" in table
    assert "1 of 1 runs here" in table
