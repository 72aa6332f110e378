"""gaussian_mi: closed forms, symmetry, invariance, bias correction, bad input."""

import math

import numpy as np
import pytest

from pidcore.estimators.info import gaussian_mi


def random_covariance(dim, rng, samples_per_dim=3):
    factor = rng.standard_normal((dim, samples_per_dim * dim))
    return factor @ factor.T / (samples_per_dim * dim)


@pytest.mark.parametrize("rho", [0.0, 0.3, -0.7, 0.99])
def test_bivariate_closed_form(rho):
    cov = np.array([[2.0, rho * math.sqrt(2.0 * 5.0)], [rho * math.sqrt(2.0 * 5.0), 5.0]])
    expected = 0.5 * math.log2(1.0 / (1.0 - rho**2))
    assert gaussian_mi(cov, [0], [1]) == pytest.approx(expected, abs=1e-12)


def test_vector_closed_form_independent_channels():
    # X_i = Y_i + N_i with unit-variance Y_i and noise variances v_i: I = sum 0.5 log2(1 + 1/v_i).
    noise = np.array([0.5, 2.0, 0.1])
    cov = np.block([[np.eye(3), np.eye(3)], [np.eye(3), np.eye(3) + np.diag(noise)]])
    expected = float(np.sum(0.5 * np.log2(1.0 + 1.0 / noise)))
    assert gaussian_mi(cov, [0, 1, 2], [3, 4, 5]) == pytest.approx(expected, abs=1e-12)


def test_symmetric_in_arguments_and_slices():
    cov = random_covariance(7, np.random.default_rng(1))
    forward = gaussian_mi(cov, [0, 1, 2], [4, 6])
    assert gaussian_mi(cov, [4, 6], [0, 1, 2]) == pytest.approx(forward, abs=1e-12)
    assert gaussian_mi(cov, slice(0, 3), slice(3, 7)) == pytest.approx(gaussian_mi(cov, [0, 1, 2], [3, 4, 5, 6]))


def test_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(2)
    cov = random_covariance(8, rng)
    a, b = list(range(5)), list(range(5, 8))
    transform = np.zeros((8, 8))
    transform[:5, :5] = rng.standard_normal((5, 5))
    transform[5:, 5:] = rng.standard_normal((3, 3))
    mapped = transform @ cov @ transform.T
    assert gaussian_mi(mapped, a, b) == pytest.approx(gaussian_mi(cov, a, b), abs=1e-9)


def test_bias_correction_reduces_bias_on_samples():
    rng = np.random.default_rng(3)
    dim_a, dim_b, n, trials = 4, 4, 60, 200
    true_cov = random_covariance(dim_a + dim_b, rng)
    truth = gaussian_mi(true_cov, range(dim_a), range(dim_a, dim_a + dim_b))
    chol = np.linalg.cholesky(true_cov)
    plain, corrected = [], []
    for _ in range(trials):
        samples = rng.standard_normal((n, dim_a + dim_b)) @ chol.T
        sample_cov = np.cov(samples, rowvar=False)
        a, b = range(dim_a), range(dim_a, dim_a + dim_b)
        plain.append(gaussian_mi(sample_cov, a, b))
        corrected.append(gaussian_mi(sample_cov, a, b, n=n, bias_correct=True))
    plain_bias = np.mean(plain) - truth
    corrected_bias = np.mean(corrected) - truth
    assert plain_bias > 0.1  # the plug-in estimate is strongly biased upwards at n = 60, d = 8
    assert abs(corrected_bias) < 0.2 * plain_bias
    # the corrected mean is within 3 standard errors of the truth
    assert abs(corrected_bias) < 3 * np.std(corrected) / math.sqrt(trials)


@pytest.mark.parametrize(
    ("cov", "a", "b", "message"),
    [
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), [0], [1], "NaN or inf"),
        (np.array([[1.0, 0.5], [0.2, 1.0]]), [0], [1], "not symmetric"),
        (np.array([[1.0, 1.0], [1.0, 1.0]]), [0], [1], "rank-deficient|not positive definite"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), [0], [1], "non-positive variance"),
        (np.eye(3), [0], [0, 1], "overlap"),
        (np.eye(3), [0], [], "empty"),
        (np.eye(3), [0], [5], "outside"),
        (np.ones(3), [0], [1], "square 2-D"),
    ],
)
def test_bad_input_raises_value_error(cov, a, b, message):
    with pytest.raises(ValueError, match=message):
        gaussian_mi(cov, a, b)


def test_bias_correction_needs_enough_samples():
    with pytest.raises(ValueError, match="needs the sample size"):
        gaussian_mi(np.eye(2), [0], [1], bias_correct=True)
    with pytest.raises(ValueError, match="n > dim"):
        gaussian_mi(np.eye(4), [0, 1], [2, 3], n=4, bias_correct=True)
