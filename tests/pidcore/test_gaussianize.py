import numpy as np
import torch
from scipy import stats

from pidcore.gaussianize import FlowGaussianizer

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


# -- Gaussianization modes (pidcore.latents, pidcore.copula) ------------------------------------------------

import pytest  # noqa: E402

from pidcore.copula import copula_gain, normal_scores  # noqa: E402
from pidcore.latents import check_mode, crossfit  # noqa: E402
from pidcore.pid import gaussian_pid  # noqa: E402
from pidcore.pipeline import _fold_ids, pid_flow  # noqa: E402

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


def test_copula_gain_sees_warped_marginals_not_gaussian_ones():
    rng = np.random.default_rng(1)
    fold_ids = _fold_ids(2000, 2, 0)
    g = rng.standard_normal((2000, 4))
    assert copula_gain(g, fold_ids) < 0
    assert copula_gain(g ** 3, fold_ids) > 0.3
    assert copula_gain(np.exp(g), fold_ids) > 0.1


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
    auto = pid_flow(*warped, dims=(2, 2, 1))
    assert auto.gaussianization == "copula"
    assert auto.pid == copula.pid


def test_gaussian_data_loses_at_most_001_bits_to_the_default_gaussianization():
    (x1, x2, y), _ = _gaussian_system(4000, seed=3)
    reference = pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize="none")
    for mode in ("auto", "copula"):
        result = pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize=mode)
        assert abs(result.pid.total - reference.pid.total) <= 0.01, mode
    assert pid_flow(x1, x2, y, dims=(2, 2, 1)).gaussianization == "none"


def test_unsupervised_modes_share_coordinates_and_flows_do_not():
    (x1, x2, y), _ = _gaussian_system(400, seed=4)
    fold_ids = _fold_ids(400, 2, 0)
    variables = [(y, "y", 1, 2), (x1 ** 3, "x1", 2, 0), (x2, "x2", 2, 1)]
    for mode in ("none", "copula"):
        fitted = crossfit(variables, fold_ids, mode, {}, {})
        assert fitted.shared and fitted.modes == [mode] * 3 and fitted.flow_gain is None
    auto = crossfit(variables, fold_ids, "auto", {"max_epochs": 2}, {})
    assert auto.modes == ["none", "copula", "none"] and auto.flow_gain is not None
    flow = crossfit(variables, fold_ids, "flow", {"max_epochs": 2}, {})
    assert not flow.shared and flow.modes == ["flow"] * 3
    with pytest.raises(ValueError, match="unknown flow option"):
        crossfit(variables, fold_ids, "flow", {"hidden": 3}, {})
