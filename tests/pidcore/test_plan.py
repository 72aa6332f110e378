"""The Gaussianization plan: auto's choices at real width, stable, once per analysis, batch-invariant."""

import json
import warnings

import numpy as np
import pytest

from pidcore.gaussianize.plan import GaussianizationPlan, marginal_decision, weighted_jarque_bera
from pidcore.pipeline.layerwise import gaussianization_plan, layerwise
from pidcore.reduce.pca import PCAReducer
from pidcore.synthetic import real_width_system

PARTS = ("redundancy", "unique1", "unique2", "synergy", "total")


def _system(massive_in=("x1", "x2"), seed=0, layers=3):
    """A wide system (n = 300, 512 features per source): 2% of one or both sources' features are massive and
    heavy-tailed (they dominate the raw variance, as in LLM activations); the other source plain."""
    system = real_width_system(n=300, width=512, layers=layers, signal=(12.0, 16.0), seed=seed)
    if set(massive_in) != {"x1", "x2"}:
        plain = real_width_system(n=300, width=512, layers=layers, signal=(12.0, 16.0), seed=seed, massive=0.0)
        return (system.x1 if "x1" in massive_in else plain.x1, system.x2 if "x2" in massive_in else plain.x2,
                system.y, system.truth)
    return system.x1, system.x2, system.y, system.truth


def _run(x1, x2, y, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return layerwise(x1, x2, y, dims=(8, 8, 4), bootstrap=0, **options)


@pytest.mark.parametrize("massive_in", [("x1",), ("x2",)])
def test_a_source_with_massive_heavy_tailed_features_is_never_left_raw(massive_in):
    """The old rule scored 64 evenly spaced columns (nearly all plain) and left such a source raw, where raw PCA
    keeps the massive features' tails and most of the source's information is lost. The plan weighs columns
    by variance: the copula for that source, and auto's numbers are near the forced copula's (the other, plain
    source may keep "none": copula rank noise on it moves the total by ~0.1 bits at n = 300)."""
    x1, x2, y, _ = _system(massive_in)
    auto = _run(x1, x2, y)
    chosen = auto.plan.marginal
    assert chosen[massive_in[0]] == "copula"
    raw = _run(x1, x2, y, gaussianize="none")
    copula = _run(x1, x2, y, gaussianize="copula")
    for layer, (a, c, r) in enumerate(zip(auto.layers, copula.layers, raw.layers, strict=True)):
        assert abs(a.pid.total - c.pid.total) < 0.15, (layer, a.pid, c.pid)
        assert c.pid.total - r.pid.total > 0.5, (layer, c.pid, r.pid)  # raw loses a lot: the choice matters


def test_gaussian_features_keep_none_and_the_statistic_sits_far_from_its_threshold():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 300)) * rng.uniform(0.5, 3.0, size=300)
    decision = marginal_decision("x1", [x, x[:, ::-1]])
    assert decision.choice == "none" and not decision.close
    statistic, sd = weighted_jarque_bera(x)
    assert abs(statistic - 2.0) < 3 * sd  # the null mean of each column's Jarque-Bera statistic is 2
    heavy = marginal_decision("x1", [np.sinh(1.5 * x / x.std(axis=0))])
    assert heavy.choice == "copula" and heavy.statistic > 10 * heavy.threshold


def test_layer_batches_give_exactly_the_numbers_of_the_whole_analysis():
    """The service analyses layer batches on different workers with the plan made once: batches of 1, 2 and
    all layers give identical numbers, and so does the library's own call without a plan."""
    x1, x2, y, _ = _system(layers=4)
    plan = gaussianization_plan(x1, x2, y, dims=(8, 8, 4), bootstrap=0)
    whole = _run(x1, x2, y)
    assert whole.plan.to_dict() == plan.to_dict()
    for size in (1, 2):
        for start in range(0, 4, size):
            layers = list(range(start, min(start + size, 4)))
            batch = _run([x1[i] for i in layers], [x2[i] for i in layers], y, plan=plan, layer_ids=layers)
            for position, layer in enumerate(layers):
                assert batch.layers[position].pid == whole.layers[layer].pid


def test_a_one_in_a_million_nudge_changes_no_choice_and_no_part_by_001_bits():
    x1, x2, y, _ = _system(layers=2)
    rng = np.random.default_rng(9)
    nudged = [x * (1 + 1e-6 * rng.standard_normal(x.shape)) for x in x1]
    first, second = _run(x1, x2, y), _run(nudged, x2, y)
    for a, b in zip(first.plan.decisions, second.plan.decisions, strict=True):
        assert a.choice == b.choice or a.close
    for a, b in zip(first.layers, second.layers, strict=True):
        assert max(abs(getattr(a.pid, p) - getattr(b.pid, p)) for p in PARTS) < 0.01


def test_the_plan_records_every_choice_and_round_trips_as_json():
    x1, x2, y, _ = _system(layers=2)
    plan = gaussianization_plan(x1, x2, y, dims=(8, 8, 4), bootstrap=0)
    record = json.loads(json.dumps(plan.to_dict()))
    assert [d["variable"] for d in record["decisions"]] == ["x1", "x2", "y", "flows"]
    assert all({"choice", "statistic", "threshold", "margin", "reason", "close"} <= set(d) for d in record["decisions"])
    assert GaussianizationPlan.from_dict(record) == plan
    assert "x1 copula, x2 copula" in plan.describe()
    with pytest.raises(ValueError, match="marginal modes"):
        GaussianizationPlan.from_dict({**record, "marginal": {"x1": "flow", "x2": "none", "y": "none"}})


def test_reduce_first_applies_the_copula_to_the_kept_components():
    """The seed recipe's order: PCA of the raw features, then normal scores of the kept components; on a
    Gaussian source whose components are Gaussian it equals plain PCA up to the copula's rank noise."""
    rng = np.random.default_rng(4)
    latent = rng.normal(size=(600, 3))
    x1 = latent[:, :2] @ rng.normal(size=(2, 40)) + 2.0 * rng.normal(size=(600, 40))
    x2 = latent[:, 1:] @ rng.normal(size=(2, 40)) + 2.0 * rng.normal(size=(600, 40))
    y = latent @ rng.normal(size=(3, 2)) + rng.normal(size=(600, 2))
    first = _run([x1], [x2], y, gaussianize="copula", reduce_first=True).layers[0]
    plain = _run([x1], [x2], y, gaussianize="none").layers[0]
    assert 1.0 < plain.pid.total and abs(first.pid.total - plain.pid.total) < 0.05, (first.pid, plain.pid)
    warped = [np.sinh(x1 / x1.std(axis=0))], [x2], y  # element-wise warps: PCA mixes them, the copula after
    first = _run(*warped, gaussianize="copula", reduce_first=True).layers[0]  # cannot undo that; before can
    default = _run(*warped, gaussianize="copula").layers[0]
    assert first.pid.total < default.pid.total


def test_wide_pca_from_the_gram_matrix_equals_the_svd():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 500)) + 0.1 * rng.normal(size=(60, 500))
    fitted = PCAReducer(n_components=5).fit(x)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(fitted.explained_variance_, singular[:5] ** 2 / 59, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(fitted.components_ * vt[:5], axis=1)), 1.0, atol=1e-9)
    assert PCAReducer(variance=0.95).fit(x).n_components_ == int(np.searchsorted(
        np.cumsum(singular**2) / np.sum(singular**2), 0.95 - 1e-12) + 1)


def test_wide_principal_components_are_de_attenuated_to_the_features_pid_and_warn_near_the_noise_edge():
    """At 800 features per 200 questions (gamma = 4, noise edge at 2x a feature's noise), signal directions 4x a
    feature's noise are estimated tilted into the noise: the sample components' own PID is well below the
    features' PID (0.3+ bits of total), the de-attenuated estimate (pidcore.reduce.deattenuate) is within 0.15
    bits of it; at 2.5x several directions sit near or below the edge, the total stays low and a "pca-loss"
    warning names the source and layer with what the correction added; at 60x nothing is lost and nothing warns."""
    from pidcore.estimators.pid import gaussian_pid
    from pidcore.gaussianize.latents import PipelineWarning

    def caught(signal):
        system = real_width_system(n=200, width=800, layers=1, signal=(signal, signal), seed=2)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            layer = layerwise(system.x1, system.x2, system.y, dims=(8, 8, 4), bootstrap=50).layers[0]
        raw = gaussian_pid(np.cov(layer.latents, rowvar=False), layer.dims).total - system.truth[0].total
        parts = [getattr(layer.pid, part) for part in ("redundancy", "unique1", "unique2", "synergy")]
        np.testing.assert_allclose(layer.pointwise.mean(axis=0), parts, atol=1e-9)  # pointwise terms follow
        found = {(w.message.kind, w.message.layer): w.message.bits for w in seen if isinstance(w.message, PipelineWarning)}
        return layer.pid.total - system.truth[0].total, raw, found

    error, raw, found = caught(4.0)
    assert raw < -0.3 and abs(error) < 0.15
    error, raw, found = caught(2.5)
    assert error < -0.3 and found[("pca-loss", 0)] > 0.2
    error, raw, found = caught(60.0)
    assert abs(error) < 0.15 and ("pca-loss", 0) not in found
