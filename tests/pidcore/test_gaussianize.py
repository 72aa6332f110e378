import numpy as np
import torch
from scipy import stats

from pidcore.gaussianize.flows import FlowGaussianizer

torch.set_num_threads(1)


def test_flow_makes_skewed_data_gaussian_and_is_deterministic():
    rng = np.random.default_rng(1)
    x = np.stack([rng.exponential(size=3000), rng.normal(size=3000) ** 3], axis=1)
    a = FlowGaussianizer(seed=3, max_epochs=5).fit(x).transform(x)
    b = FlowGaussianizer(seed=3, max_epochs=5).fit(x).transform(x)
    np.testing.assert_array_equal(a, b)
    for column in a.T:
        assert abs(stats.skew(column)) < 0.2
        assert abs(column.std() - 1.0) < 0.05


# -- Gaussianization modes (pidcore.gaussianize.latents, pidcore.gaussianize.copula) ------------------------------------------------

import pytest  # noqa: E402

from pidcore.estimators.pid import gaussian_pid  # noqa: E402
from pidcore.gaussianize.copula import normal_scores  # noqa: E402
from pidcore.gaussianize.latents import check_mode, crossfit  # noqa: E402
from pidcore.pipeline.layerwise import _fold_ids, pid_flow  # noqa: E402

PARTS = ("redundancy", "unique1", "unique2", "synergy", "total")


def _gaussian_system(n, seed=0):
    """x1 (2), x2 (2), y (1) jointly Gaussian with a known PID."""
    a = np.zeros((5, 5))
    a[0, 0] = a[1, 1] = 1
    a[2, 0], a[2, 2] = 0.5, 1
    a[3, 3] = 1
    a[4, 0], a[4, 3], a[4, 4] = 1, 0.8, 0.7
    g = np.random.default_rng(seed).standard_normal((n, 5)) @ a.T
    return (g[:, :2], g[:, 2:4], g[:, 4:]), gaussian_pid(a @ a.T, (2, 2, 1))


def _errors(result, reference):
    return {p: getattr(result.pid, p) - getattr(reference.pid if hasattr(reference, "pid") else reference, p)
            for p in PARTS}


def test_check_mode_accepts_modes_and_old_booleans():
    assert [check_mode(m) for m in ("auto", "none", "copula", "flow")] == ["auto", "none", "copula", "flow"]
    assert check_mode(True) == "auto" and check_mode(False) == "none"
    with pytest.raises(ValueError, match="gaussianize must be one of auto, none, copula, flow"):
        check_mode("gauss")
    with pytest.raises(ValueError, match="gaussianize"):
        pid_flow(*_gaussian_system(100)[0], dims=(2, 2, 1), gaussianize=1)


def test_normal_scores_are_standard_and_monotone():
    x = np.random.default_rng(0).exponential(size=(1000, 3)) ** 2
    z = normal_scores(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-12)
    assert all(abs(stats.skew(c)) < 0.01 for c in z.T)
    assert np.all(np.diff(z[np.argsort(x[:, 0]), 0]) > 0)  # monotone in each coordinate
    ties = normal_scores(np.repeat([[1.0], [2.0]], 5, axis=0))
    assert len(np.unique(ties)) == 2


def test_copula_alone_recovers_an_elementwise_warped_gaussian_and_records_modes():
    """Element-wise monotone warps of a Gaussian system: the copula (no training) recovers the plug-in
    PID of the true latents within 0.01 bits per part; PCA alone is far off. Modes are recorded."""
    (x1, x2, y), truth = _gaussian_system(6000, seed=2)
    reference = pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize="none")  # plug-in on the true latents
    warped = (x1 ** 3, np.sinh(2 * x2), np.exp(y))
    copula = pid_flow(*warped, dims=(2, 2, 1), gaussianize="copula")
    plain = pid_flow(*warped, dims=(2, 2, 1), gaussianize="none")
    assert max(abs(e) for e in _errors(copula, reference).values()) < 0.01
    assert max(abs(e) for e in _errors(copula, truth).values()) < 0.05
    assert max(abs(e) for e in _errors(plain, truth).values()) > 0.3
    assert copula.gaussianization == "copula" and plain.gaussianization == "none"
    auto = pid_flow(*warped, dims=(2, 2, 1), flow_options={"max_epochs": 3})
    assert auto.gaussianization == "copula"
    assert auto.pid == copula.pid


def test_gaussian_data_loses_at_most_001_bits_to_the_default_gaussianization():
    (x1, x2, y), _ = _gaussian_system(4000, seed=3)
    reference = pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize="none")
    auto, copula = pid_flow(x1, x2, y, dims=(2, 2, 1)), pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize="copula")
    assert auto.gaussianization == "none" and auto.pid == reference.pid
    assert abs(copula.pid.total - reference.pid.total) <= 0.01


def test_unsupervised_modes_share_coordinates_and_flows_do_not():
    (x1, x2, y), _ = _gaussian_system(400, seed=4)
    fold_ids = _fold_ids(400, 2, 0)
    variables = [(y, "y", 1, 2), (x1 ** 3, "x1", 2, 0), (x2, "x2", 2, 1)]
    for mode in ("none", "copula"):
        fitted = crossfit(variables, fold_ids, mode, {}, {})
        assert fitted.shared and fitted.modes == [mode] * 3 and fitted.flow_gain is None
    auto = crossfit(variables, fold_ids, "auto", {"max_epochs": 2}, {})
    # the copula latents are jointly Gaussian: the flows are not tried, and the decision says why
    assert auto.modes == ["none", "copula", "none"] and auto.flow_decision.choice == "none"
    assert "jointly Gaussian" in auto.flow_decision.reason and auto.flow_decision.statistic < 4.0
    flow = crossfit(variables, fold_ids, "flow", {"max_epochs": 2}, {})
    assert not flow.shared and flow.modes == ["flow"] * 3
    with pytest.raises(ValueError, match="unknown flow option"):
        crossfit(variables, fold_ids, "flow", {"hidden": 3}, {})


def _pointwise_truth(z, cov, dims):
    """(n, 4) pointwise [R, U1, U2, S] bits of the true latents z under the TRUE covariance (BROJA)."""
    from pidcore.estimators.pid import solve_union
    from pidcore.pipeline.layerwise import _log_ratio

    d1, d2, _ = dims
    y, x = np.arange(d1 + d2, z.shape[1]), np.arange(d1 + d2)
    i1, i2, i12 = (_log_ratio(z, cov, s, y) / np.log(2) for s in (np.arange(d1), np.arange(d1, d1 + d2), x))
    solution = solve_union(cov, dims)
    q = solution.cov_q
    resid = z[:, y] - z[:, x] @ (q[np.ix_(y, x)] @ np.linalg.pinv(q[np.ix_(x, x)])).T
    post, prior = solution.posterior_cov, cov[np.ix_(y, y)]
    log_q = -0.5 * np.einsum("ij,ij->i", resid, np.linalg.solve(post, resid.T).T) - 0.5 * np.linalg.slogdet(post)[1]
    log_p = -0.5 * np.einsum("ij,ij->i", z[:, y], np.linalg.solve(prior, z[:, y].T).T) - 0.5 * np.linalg.slogdet(prior)[1]
    union = (log_q - log_p) / np.log(2)
    return np.stack([i1 + i2 - union, union - i2, union - i1, i12 - union], axis=1)


def test_pointwise_terms_of_a_warped_system_follow_the_per_sample_truth():
    """Per-sample truth: pointwise terms of the TRUE covariance on the true Gaussian latents. With the default
    Gaussianization on element-wise warped data the pipeline's terms are within 0.15 bits RMS of it."""
    a = np.zeros((5, 5))
    a[0, 0] = a[1, 1] = 1
    a[2, 0], a[2, 2] = 0.5, 1
    a[3, 3] = 1
    a[4, 0], a[4, 3], a[4, 4] = 1, 0.8, 0.7
    g = np.random.default_rng(7).standard_normal((4000, 5)) @ a.T
    truth = _pointwise_truth(g, a @ a.T, (2, 2, 1))
    warped = (g[:, :2] ** 3, np.sinh(2 * g[:, 2:4]), np.exp(g[:, 4:]))
    result = pid_flow(*warped, dims=(2, 2, 1), flow_options={"max_epochs": 3})
    rms = np.sqrt(np.mean((result.pointwise - truth) ** 2, axis=0))
    assert np.all(rms < 0.15), rms
    plain = pid_flow(*warped, dims=(2, 2, 1), gaussianize="none")
    assert np.sqrt(np.mean((plain.pointwise - truth) ** 2, axis=0)).max() > 0.3


def _mixing(n, seed):
    """4 + 4 + 2 Gaussian latents seen through R sinh(1.2 w) (a rotation after an element-wise warp)."""
    from scipy.stats import ortho_group

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(10, 10)) * 0.5 + np.eye(10)
    g = rng.multivariate_normal(np.zeros(10), mix @ mix.T, size=n)
    latents = (g[:, :4], g[:, 4:8], g[:, 8:])
    warped = tuple(np.sinh(1.2 * (v / v.std(axis=0)) @ ortho_group.rvs(v.shape[1], random_state=rng))
                   @ ortho_group.rvs(v.shape[1], random_state=rng) for v in latents)
    return warped, latents


def test_auto_takes_the_joint_flows_only_when_they_beat_the_copula_on_held_out_likelihood():
    """A mixing warp (the seed whose warped coordinates are far from independent, where the flows fed with
    normal scores lost 0.45 bits): the copula loses ~1.5 bits; the joint flows raise the held-out likelihood,
    auto takes them and comes within 0.2 bits per part of the plug-in on the true latents. An element-wise
    warp: the copula is already right, auto keeps it (same numbers as gaussianize="copula")."""
    from pidcore.gaussianize.latents import FLOW_MARGIN

    warped, latents = _mixing(2000, 1)
    reference = pid_flow(*latents, dims=(4, 4, 2), gaussianize="none")
    copula = pid_flow(*warped, dims=(4, 4, 2), gaussianize="copula")
    auto = pid_flow(*warped, dims=(4, 4, 2))
    assert auto.gaussianization == "flow"
    loss_copula = reference.pid.total - copula.pid.total
    loss_auto = reference.pid.total - auto.pid.total
    assert loss_copula > 1.0 and abs(loss_auto) < 0.15 * loss_copula, (loss_copula, loss_auto)
    assert max(abs(e) for p, e in _errors(auto, reference).items() if p != "total") < 0.2
    (x1, x2, y), _ = _gaussian_system(2000, seed=5)
    elementwise = (x1 ** 3, np.exp(x2), y)
    kept = crossfit([(elementwise[2], "y", 1, 2), (elementwise[0], "x1", 2, 0), (elementwise[1], "x2", 2, 1)],
                    _fold_ids(2000, 2, 0), "auto", {"max_epochs": 5}, {})
    assert kept.modes == ["none", "copula", "copula"] and kept.shared
    assert kept.flow_decision.choice == "none" and (kept.flow_gain is None or kept.flow_gain <= FLOW_MARGIN)


def test_many_layers_probe_a_few_before_training_flows_on_all():
    """layerwise with more layers than PROBE_LAYERS: flows are tried on a few layers; where they do not pay off
    every layer keeps the copula, and each layer then equals its own pid_flow (shared coordinates)."""
    (x1, x2, y), _ = _gaussian_system(600, seed=6)
    from pidcore.pipeline.layerwise import layerwise

    layers = [x1 * s for s in (1, 2, 3, 4, 5, 6)]
    result = layerwise(layers, [x2 ** 3] * 6, y, dims=(2, 2, 1), flow_options={"max_epochs": 2})
    assert [r.gaussianization for r in result.layers] == ["x1 none, x2 copula, y none"] * 6
    single = pid_flow(layers[3], x2 ** 3, y, dims=(2, 2, 1), flow_options={"max_epochs": 2})
    assert single.pid == result.layers[3].pid


def test_flows_on_degenerate_latents_fall_back_with_a_warning():
    """A target that is a function of five question templates, like a language source: the joint likelihood is
    unbounded there, so the flows are not trained; auto keeps the PCA latents and says so, "flow" refuses
    with the fix."""
    rng = np.random.default_rng(11)
    template = rng.integers(0, 5, size=400)
    x2 = np.eye(5)[template] @ rng.normal(size=(5, 6))
    y = np.eye(5)[template] @ rng.normal(size=(5, 2))
    x1 = rng.normal(size=(400, 3))
    with pytest.warns(RuntimeWarning, match="deterministic functions of one another"):
        result = pid_flow(x1, x2, y, dims=(3, 4, 2))
    assert result.gaussianization == "none"
    assert 10.0 < result.pid.unique2 < 25.0 and result.pid.unique1 < 0.05
    with pytest.raises(ValueError, match="joint flows could not be fitted.*use gaussianize='auto' or 'copula'"):
        pid_flow(x1, x2, y, dims=(3, 4, 2), gaussianize="flow")


def test_unmixing_score_prefers_the_true_unmixing_and_leaves_element_wise_warps_alone():
    """The flows' start picks identity or ICA by this held-out likelihood: on R sinh(w) the true unmixing R^T
    scores well above no unmixing; on sinh(w) itself (element-wise) no unmixing beats a rotation; the score
    does not depend on the scale of each component."""
    from scipy.stats import ortho_group

    from pidcore.gaussianize.jointflow import unmixing_score

    rng = np.random.default_rng(3)
    g = rng.standard_normal((3000, 3)) @ np.array([[1, 0, 0], [0.6, 0.8, 0], [0.3, 0.2, 0.9]]).T
    rotation = ortho_group.rvs(3, random_state=rng)
    warped = np.sinh(1.2 * g)
    mixed = warped @ rotation.T
    eye = np.eye(3)
    assert unmixing_score(mixed, rotation.T) > unmixing_score(mixed, eye) + 0.3
    assert unmixing_score(warped, eye) > unmixing_score(warped, rotation) + 0.3
    assert unmixing_score(mixed, np.diag([2.0, 0.5, 3.0]) @ rotation.T) == pytest.approx(
        unmixing_score(mixed, rotation.T), abs=1e-9)
