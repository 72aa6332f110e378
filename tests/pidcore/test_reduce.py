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
