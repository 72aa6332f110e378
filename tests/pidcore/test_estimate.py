"""Bias correction and intervals on Gaussian systems with known PIDs (pidcore.estimators.estimate, pidcore.pipeline.layerwise).

Sizes are small for the suite's time budget; benchmarks/bench_estimates.py prints the full tables."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pidcore.estimators.estimate import (
    FIELDS,
    basic_interval,
    bootstrap_rows,
    corrected_pid,
    mi_bias,
    plugin_bias,
    wishart_covariances,
)
from pidcore.estimators.info import logdet_bias
from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import pid_flow


def known_system(dims, seed: int = 1, strength: float = 2.0) -> np.ndarray:
    """A covariance of (X1, X2, Y) whose four PID parts are all well above 0 (a generic random system)."""
    rng = np.random.default_rng(seed)
    d = sum(dims)
    a = rng.normal(size=(d, d)) * strength / np.sqrt(d)
    return a @ a.T + 0.3 * np.eye(d)


def test_wishart_draws_have_the_covariance_and_the_log_determinant_bias():
    cov = known_system((2, 2, 1))
    draws = wishart_covariances(cov, 50, 4000, np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(axis=0), cov, atol=0.05 * np.abs(cov).max())
    excess = np.linalg.slogdet(draws)[1] - np.linalg.slogdet(cov)[1]
    # logdet_bias is for the 1/(n-1) covariance up to the d ln(2/nu) term it includes
    assert abs(excess.mean() - logdet_bias(5, 50)) < 4 * excess.std() / np.sqrt(len(excess))


def test_mi_bias_is_the_mean_plugin_mi_of_independent_variables():
    rng = np.random.default_rng(1)
    values = []
    for _ in range(300):
        z = rng.standard_normal((60, 5))
        values.append(gaussian_pid(np.cov(z, rowvar=False), (2, 2, 1)).total)
    assert abs(np.mean(values) - mi_bias(4, 1, 60)) < 3 * np.std(values) / np.sqrt(len(values))
    assert plugin_bias((2, 2, 1), 60) == pytest.approx(mi_bias(4, 1, 60))


def test_corrected_parts_are_unbiased_where_the_plugin_is_not():
    """(8, 8, 4) with 400 samples, 40 seeds: the plug-in's redundancy, synergy and total sit well above the
    truth; every corrected part is within 3 standard errors (and 0.03 bits) of it."""
    dims, n = (8, 8, 4), 400
    cov = known_system(dims)
    truth = gaussian_pid(cov, dims).as_dict()
    chol = np.linalg.cholesky(cov)
    plugin, corrected = [], []
    for seed in range(40):
        z = np.random.default_rng(100 + seed).standard_normal((n, sum(dims))) @ chol.T
        estimate = corrected_pid(np.cov(z, rowvar=False), dims, n, seed=seed)
        plugin.append([estimate.plugin.as_dict()[k] - truth[k] for k in FIELDS])
        corrected.append([estimate.corrected.as_dict()[k] - truth[k] for k in FIELDS])
    plugin, corrected = np.array(plugin), np.array(corrected)
    error = corrected.std(axis=0) / np.sqrt(len(corrected))
    for column, name in enumerate(FIELDS):
        assert abs(corrected[:, column].mean()) < max(3 * error[column], 0.01), name
        assert abs(corrected[:, column].mean()) < 0.03, name
    for name in ("redundancy", "synergy", "total"):
        column = FIELDS.index(name)
        assert plugin[:, column].mean() > 0.04 and plugin[:, column].mean() > 5 * error[column], name


def test_basic_interval_is_the_corrected_estimate_minus_the_draws_deviations():
    draws = np.array([1.0, 1.1, 1.2, 1.3, 5.0])
    lo, hi = basic_interval(0.5, draws, level=0.5)
    deviations = draws - draws.mean()
    assert (lo, hi) == pytest.approx((0.5 - np.percentile(deviations, 75), 0.5 - np.percentile(deviations, 25)))


def test_bootstrap_rows_are_the_same_for_every_call_and_stay_in_their_fold():
    folds = np.arange(30) % 2
    first = list(bootstrap_rows(folds, 5, seed=3))
    again = list(bootstrap_rows(folds, 5, seed=3))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.bincount(folds[a]).tolist() == [15, 15]


def test_intervals_cover_the_truth_over_seeds():
    """pid_flow without Gaussianization, (8, 8, 4), 400 samples, 100 bootstrap rounds, 40 seeds: every 95%
    interval contains the truth in at least 34 of 40 runs (a 1% chance at 95% coverage; the benchmark
    prints coverage over more seeds)."""
    dims, n = (8, 8, 4), 400
    cov = known_system(dims)
    truth = gaussian_pid(cov, dims).as_dict()
    chol = np.linalg.cholesky(cov)
    hits = np.zeros(len(FIELDS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(40):
            z = np.random.default_rng(500 + seed).standard_normal((n, sum(dims))) @ chol.T
            result = pid_flow(z[:, :8], z[:, 8:16], z[:, 16:], dims=dims, gaussianize=False, bootstrap=100,
                              seed=seed)
            hits += [result.ci[k][0] <= truth[k] <= result.ci[k][1] for k in FIELDS]
    coverage = dict(zip(FIELDS, hits / 40, strict=True))
    assert all(value >= 0.85 for value in coverage.values()), coverage


def test_the_plugin_estimator_is_still_available_and_named():
    cov = known_system((2, 2, 1))
    z = np.random.default_rng(0).standard_normal((300, 5)) @ np.linalg.cholesky(cov).T
    result = pid_flow(z[:, :2], z[:, 2:4], z[:, 4:], dims=(2, 2, 1), gaussianize=False, estimator="plugin",
                      bootstrap=50)
    assert result.estimator == "plugin"
    assert result.pid == result.plugin
    assert all(value == 0 for value in result.bias.values())
    with pytest.raises(ValueError, match="estimator must be one of corrected, plugin"):
        pid_flow(z[:, :2], z[:, 2:4], z[:, 4:], dims=(2, 2, 1), gaussianize=False, estimator="jackknife")
