import numpy as np
import pytest

from pidcore.reduce.pca import PCAReducer


def test_pca_recovers_a_low_rank_subspace_and_variance_rule():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    x = rng.normal(size=(500, 2)) * [3.0, 1.0] @ basis.T + 1e-3 * rng.normal(size=(500, 6))
    reducer = PCAReducer(variance=0.99).fit(x)
    assert reducer.components_.shape == (2, 6)
    overlap = np.linalg.svd(reducer.components_ @ basis)[1]
    np.testing.assert_allclose(overlap, 1.0, atol=1e-4)
    z = reducer.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-10)
    assert np.var(z[:, 0]) > np.var(z[:, 1])


@pytest.mark.parametrize("bad, message", [
    (np.full((10, 3), 2.0), "constant"),
    (np.array([[np.nan, 1.0]] * 10), "NaN"),
])
def test_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        PCAReducer(n_components=1).fit(bad)


def test_more_components_than_samples():
    with pytest.raises(ValueError, match="n_components"):
        PCAReducer(n_components=5).fit(np.random.default_rng(0).normal(size=(4, 10)))


def test_cap_at_rank_keeps_only_the_informative_components():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 12))  # rank 3 in 12 dimensions
    with pytest.raises(ValueError, match="rank 3"):
        PCAReducer(n_components=8).fit(x)
    reducer = PCAReducer(n_components=8, cap_at_rank=True).fit(x)
    assert reducer.rank_ == 3 and reducer.n_components_ == 3
    np.testing.assert_allclose(reducer.transform(x) @ reducer.components_ + reducer.mean_, x, atol=1e-9)
    assert reducer.truncate(2).components_.shape == (2, 12)
    with pytest.raises(ValueError, match="truncate"):
        reducer.truncate(3)


def test_spiked_overlap_is_the_squared_correlation_of_sample_and_population_scores_at_real_width():
    """One spike of l times the noise at 500 questions x 2,000 features (gamma = 4): the sample component's
    scores correlate with the population component's (signal plus the noise along its direction) by
    1 - gamma / l^2 (squared), which PCAReducer.overlap_ estimates from the eigenvalues alone."""
    from pidcore.reduce.pca import PCAReducer

    rng = np.random.default_rng(0)
    n, d = 500, 2000
    for spike in (4.0, 9.0):
        x = rng.standard_normal((n, d))
        x[:, 0] += np.sqrt(spike) * rng.standard_normal(n)
        reducer = PCAReducer(n_components=1).fit(x)
        actual = np.corrcoef(reducer.transform(x)[:, 0], x[:, 0])[0, 1] ** 2
        expected = 1 - (d / (n - 1)) / spike**2
        assert abs(actual - expected) < 0.08 and abs(reducer.overlap_[0] - actual) < 0.08, (spike, actual)


def test_deattenuate_recovers_the_population_covariance_and_backs_off_to_stay_definite():
    """Standardised z = sqrt(o) u + sqrt(1 - o) e per coordinate (e independent): deattenuate gives back u's
    covariance exactly from z's; an overlap too small for the data is applied partly (t > 0), leaving the
    least eigenvalue at MIN_EIGENVALUE; overlaps of 1 change nothing."""
    from pidcore.reduce.deattenuate import MIN_EIGENVALUE, deattenuate

    population = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.3], [0.5, 0.3, 1.0]])
    overlaps = np.array([0.6, 0.8, 1.0])
    root = np.sqrt(overlaps)
    observed = population * np.outer(root, root) + np.diag(1 - overlaps)
    corrected, share = deattenuate(observed, overlaps)
    np.testing.assert_allclose(corrected, population, atol=1e-12)
    assert share == 0.0
    unchanged, share = deattenuate(observed, np.ones(3))
    np.testing.assert_array_equal(unchanged, observed)
    assert share == 0.0
    strong = np.array([[1.0, 0.0, 0.6], [0.0, 1.0, 0.6], [0.6, 0.6, 1.0]])  # de-attenuating by 0.5 breaks it
    corrected, share = deattenuate(strong, np.array([0.5, 0.5, 1.0]))
    assert 0 < share < 1
    assert abs(np.linalg.eigvalsh(corrected)[0] - MIN_EIGENVALUE) < 1e-4


def test_the_correction_is_continuous_across_the_noise_edge_and_the_floor():
    """A component whose sample eigenvalue crosses the noise edge (overlap NaN -> just above 0) or the floor
    changes the correction by next to nothing: no jump for a perturbation to flip (the 1e-6 stability bar)."""
    from pidcore.reduce.deattenuate import OVERLAP_FLOOR, deattenuate, used_overlaps

    np.testing.assert_allclose(used_overlaps([np.nan, 1e-9, OVERLAP_FLOOR - 1e-9, OVERLAP_FLOOR, 0.8, 1.0]),
                               [1.0, 1.0, OVERLAP_FLOOR, OVERLAP_FLOOR, 0.8, 1.0], atol=1e-8)
    cov = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, 0.2], [0.3, 0.2, 1.0]])
    below, _ = deattenuate(cov, [np.nan, 0.7, 1.0])
    above, _ = deattenuate(cov, [1e-9, 0.7, 1.0])
    np.testing.assert_allclose(below, above, atol=1e-8)
