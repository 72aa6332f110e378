"""normal_scores (pidcore.gaussianize.copula) against a plain reference: scipy's average ranks, then ndtri."""

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from pidcore.gaussianize.copula import normal_scores


def _reference(x: np.ndarray) -> np.ndarray:
    """Phi^-1((average rank - 0.5) / n) per column, standardised; constant columns 0."""
    x = np.asarray(x, dtype=float)
    scores = ndtri((rankdata(x, axis=0) - 0.5) / len(x))
    spread = scores.std(axis=0)
    return np.where(spread > 0, (scores - scores.mean(axis=0)) / np.where(spread > 0, spread, 1.0), 0.0)


def _cases():
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((300, 64)) * np.exp(rng.standard_normal(64))
    nearly_constant = np.zeros((40, 3))
    nearly_constant[7, 0] = 1.0  # one value apart
    nearly_constant[:, 1] = rng.standard_normal(40)
    nearly_constant[::2, 2] = -1.5  # two runs of 20
    return {
        "continuous": rng.standard_normal((50, 7)),
        "rounded (many ties)": np.round(rng.standard_normal((200, 9)), 1),
        "three levels": rng.integers(0, 3, (100, 5)).astype(float),
        "integers": rng.integers(-4, 5, (60, 4)),
        "float16 (ties from rounding)": wide.astype(np.float16),
        "float32": (wide * 1e3).astype(np.float32),
        "constant and nearly constant": nearly_constant,
        "all constant": np.full((10, 3), 2.5),
        "constant beside others": np.c_[np.ones(30), rng.standard_normal(30), np.r_[np.zeros(29), 1.0]],
        "signed zeros": np.array([[0.0], [-0.0], [1.0], [-1.0], [0.0]]),
        # distinct float64 values that float32 rounds together (the sort's keys): no false ties
        "closer than float32": np.c_[1.0 + 1e-12 * rng.permutation(50), 1e-3 * rng.integers(0, 4, 50) + 1e-13 * np.arange(50)],
        "large integers": rng.integers(2**40, 2**40 + 8, (30, 2)) * 3 + np.arange(30)[:, None] % 2,
        "more columns than a block": np.round(rng.standard_normal((90, 700)), 1),
        "two rows": rng.standard_normal((2, 3)),
        "one row": rng.standard_normal((1, 3)),
    }


def test_normal_scores_equal_the_average_rank_reference_with_ties_constants_and_float16():
    for name, x in _cases().items():
        z = normal_scores(x)
        assert z.shape == x.shape and z.dtype == np.float64, name
        np.testing.assert_allclose(z, _reference(x), rtol=0, atol=1e-12, err_msg=name)


def test_normal_scores_of_float16_equal_those_of_its_exact_float64_and_keep_ties_tied():
    x = (np.random.default_rng(1).standard_normal((1000, 256)) * 3).astype(np.float16)
    z = normal_scores(x)
    np.testing.assert_allclose(z, normal_scores(x.astype(float)), rtol=0, atol=1e-12)
    values, counts = np.unique(x[:, 0], return_counts=True)
    tied = x[:, 0] == values[np.argmax(counts)]
    assert tied.sum() > 1 and np.ptp(z[tied, 0]) == 0  # a tied run shares one score
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-12)


def test_normal_scores_do_not_depend_on_row_order_or_the_column_layout():
    x = np.round(np.random.default_rng(2).standard_normal((120, 6)), 1)
    permutation = np.random.default_rng(3).permutation(120)
    np.testing.assert_allclose(normal_scores(x[permutation]), normal_scores(x)[permutation], rtol=0, atol=1e-14)
    np.testing.assert_allclose(normal_scores(np.asfortranarray(x)), normal_scores(x), rtol=0, atol=1e-14)
