"""Totals above what the answer can carry (issue 18: the demo's seed-recipe colour total was 9.1 bits for an
8-way answer). Known answer: sources and target that share only an 8-valued answer C (within each answer
independent noise) have I(X1, X2; Y) <= H(C) = 3 bits, yet the Gaussian estimate of tight clusters counts
about 0.5 log2(1/(1 - rho^2)) bits per separating direction, far above 3 bits; pidcore.study.checks measures
the clustering and the study's findings carry a caution."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from pidcore.pipeline.layerwise import layerwise
from pidcore.study.checks import answer_bound_caution, target_clusters

K, PER_CLASS = 8, 50


def _clustered(spread: float, seed: int = 0):
    """(x1, x2, y, answers): x1 (10 features) and y (7) are their answer's mean plus independent noise of sd
    `spread` (means of unit scale); x2 (9) is pure noise. Y shares nothing with the sources but the answer."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), PER_CLASS)
    x1 = rng.normal(size=(K, 10))[labels] + spread * rng.normal(size=(K * PER_CLASS, 10))
    y = rng.normal(size=(K, 7))[labels] + spread * rng.normal(size=(K * PER_CLASS, 7))
    x2 = rng.normal(size=(K * PER_CLASS, 9))
    answers = np.array([f"answer{label}" for label in labels], dtype=object)
    return x1, x2, y, answers


def test_target_clusters_measures_the_between_answer_share_exactly():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(K), PER_CLASS)
    means = rng.normal(size=(K, 7))
    means -= means.mean(axis=0)  # equal class sizes: the grand mean is 0
    residual = rng.normal(size=(K * PER_CLASS, 7))
    for label in range(K):  # each class's residuals sum to 0 ...
        residual[labels == label] -= residual[labels == label].mean(axis=0)
    between = PER_CLASS * float(np.sum(means**2))
    residual *= math.sqrt(between / 3 / float(np.sum(residual**2)))  # ... and hold a third of the between SS
    features = SimpleNamespace(target=means[labels] + residual,
                               answers=np.array([f"a{label}" for label in labels], dtype=object))
    found = target_clusters(features)
    assert found["answers"] == 8
    assert found["bound_bits"] == pytest.approx(3.0, abs=1e-12)
    assert found["entropy_bits"] == pytest.approx(3.0, abs=1e-12)  # uniform answers
    assert found["between_share"] == pytest.approx(0.75, abs=1e-12)  # between / (between + between / 3)
    # one answer only, or none: nothing to say
    assert target_clusters(SimpleNamespace(target=means[labels], answers=np.array(["a"] * len(labels)))) is None
    assert target_clusters(SimpleNamespace(target=means[labels], answers=np.array([""] * len(labels)))) is None


def test_the_gaussian_total_of_tight_answer_clusters_exceeds_the_answer_entropy_and_is_cautioned():
    x1, x2, y, answers = _clustered(spread=0.15)
    result = layerwise([x1], [x2], y, dims=(10, 9, 7), gaussianize="none", measure="mmi", bootstrap=0,
                       reduce_first=True)
    total = float(result.total[0])
    assert total > 8.0  # the truth is at most H(C) = 3 bits: the Gaussian estimate counts the 7 directions
    clusters = target_clusters(SimpleNamespace(target=y, answers=answers))
    assert clusters["between_share"] > 0.95
    layers = [{"layer": 6, "total": total}]
    caution = answer_bound_caution(layers, clusters, target_dims=7)
    assert caution["bound_bits"] == pytest.approx(3.0, abs=1e-12) and caution["answers"] == 8
    assert caution["layer"] == 6 and caution["layers_over"] == [6] and caution["total_bits"] == total
    assert "log2 8 = 3.00 bits an 8-way answer" in caution["text"] and "keeps 7 target components" in caution["text"]
    # fewer target components count fewer separating directions (pidflow's default keeps 4 of Y)
    fewer = layerwise([x1], [x2], y, dims=(10, 9, 2), gaussianize="none", measure="mmi", bootstrap=0,
                      reduce_first=True)
    assert float(fewer.total[0]) < total - 3.0


def test_loose_clusters_or_a_continuous_target_get_no_caution():
    x1, x2, y, answers = _clustered(spread=3.0)  # clusters buried in noise: the Gaussian total is small
    result = layerwise([x1], [x2], y, dims=(10, 9, 7), gaussianize="none", measure="mmi", bootstrap=0,
                       reduce_first=True)
    clusters = target_clusters(SimpleNamespace(target=y, answers=answers))
    assert float(result.total[0]) < 3.0 and clusters["between_share"] < 0.2
    assert answer_bound_caution([{"layer": 0, "total": float(result.total[0])}], clusters, 7) is None
    # a total above log2 K with a target that does not cluster by answer is not this artefact: no caution
    loose = {"answers": 8, "bound_bits": 3.0, "entropy_bits": 3.0, "between_share": 0.1}
    assert answer_bound_caution([{"layer": 0, "total": 5.0}], loose, 7) is None
    assert answer_bound_caution([{"layer": 0, "total": 5.0}], None, 7) is None


def test_the_findings_carry_the_caution_per_recipe():
    """build_report on synthetic records: the recipe whose baseline total exceeds log2 K is cautioned, in the
    findings, the CLI summary and the HTML."""
    from pidcore.study.export import findings_html
    from pidcore.study.run import Run, build_report, default_request
    from pidcore.study.verdicts import summary_lines

    request = default_request(tasks=["color"], seed_cut=False, sweep=None, bootstrap=0)
    clusters = {"answers": 8, "bound_bits": 3.0, "entropy_bits": 2.99, "between_share": 0.97}
    records = []
    for recipe, last, dims in (("pidflow", 1.8, [8, 8, 4]), ("seed", 9.1, [10, 9, 7])):
        layers = [{"layer": i, "redundancy": last / 4, "unique_vision": last / 4, "unique_language": last / 4,
                   "synergy": last / 4, "total": last} for i in range(3)]
        records.append({"type": "analysis", "model": "demo", "task": "color", "recipe": recipe, "key": "baseline",
                        "analysis": {"measure": "mmi" if recipe == "seed" else "broja", "dims": dims,
                                     "bootstrap": 0, "seed": 0, "estimator": "corrected"},
                        "n_questions": 100, "accuracy": 1.0, "mean_p_correct": 0.9, "p_correct": [0.9] * 100,
                        "correct": [True] * 100, "layers": layers})
    records.append({"type": "part", "model": "demo", "task": "color", "runs": [Run("baseline", "baseline").to_dict()],
                    "n_asked": 100, "n_correct": 100, "n_kept": 100, "n_listed": None, "seed_dims": None,
                    "model_info": {}, "sweep": None, "target_clusters": clusters})
    report = build_report(request, records)
    cautions = report["findings"]["cautions"]
    assert [(c["recipe"], c["total_bits"], c["bound_bits"], c["target_dims"]) for c in cautions] == [
        ("seed", 9.1, 3.0, 7)]
    assert any(line.startswith("caution, demo · color · seed: the total reaches 9.10 bits")
               for line in summary_lines(report["findings"]))
    assert "<p class='caution'><b>Caution</b>, demo · color · seed" in findings_html(report)
