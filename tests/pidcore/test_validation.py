"""The library refuses what it cannot estimate, before any work, saying what to change; and scaling a
variable by any factor (PID is scale invariant) gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pidcore.pipeline.layerwise import pid_flow
from pidcore.pipeline.validation import check_estimable, rows_needed, scale_free


def _system(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 3))
    return y + rng.standard_normal((n, 3)), y[:, :2] + rng.standard_normal((n, 2)), y


@pytest.mark.parametrize("n, dims, options, fragments", [
    (10, (8, 8, 4), {}, ["too few samples for dims (3, 2, 3)", "5 per fold", "use n >= 18", "dims such as"]),
    (16, (3, 2, 3), {}, ["8 per fold", "each fold needs at least 9", "use n >= 18", "(2, 2, 3)"]),
    (60, (3, 2, 3), {"bootstrap": 50}, ["50 bootstrap rounds", "use n >= 62"]),
    (40, (3, 2, 3), {"bootstrap": 50}, ["or bootstrap=0", "dims such as (1, 1, 1)"]),
    (200, (2, 2, 2), {"bootstrap": -3}, ["bootstrap must be >= 0"]),
    (200, (2, 2, 2), {"seed": 2**64}, ["seed must be between 0 and 4294967295"]),
    (200, (2, 2, 2), {"seed": -1}, ["seed must be between 0"]),
    (200, (2, 2, 2), {"folds": 1}, ["folds must be >= 2"]),
    (5, (1, 1, 1), {}, ["too few samples: n=5"]),
])
def test_what_cannot_be_estimated_is_refused_with_a_fix(n, dims, options, fragments):
    x1, x2, y = _system(n)
    with pytest.raises(ValueError) as error:
        pid_flow(x1, x2, y, dims=dims, gaussianize=False, **{"bootstrap": 0, **options})
    for fragment in fragments:
        assert fragment in str(error.value)


def test_the_suggested_fix_works():
    """n = 16, dims (3, 2, 3): refused; the n it names runs; so do the dims named for bootstrap at n = 40."""
    with pytest.raises(ValueError, match=r"use n >= 18"):
        check_estimable(16, (3, 2, 3), (3, 2, 3), folds=2, bootstrap=0, seed=0)
    x1, x2, y = _system(18)
    pid_flow(x1, x2, y, dims=(3, 2, 3), gaussianize=False, bootstrap=0)
    x1, x2, y = _system(40)
    assert rows_needed(3 + 2 + 3, 50) > 20
    pid_flow(x1, x2, y, dims=(1, 1, 1), gaussianize=False, bootstrap=500)


def test_a_request_that_runs_without_bootstrap_runs_with_it():
    """Every resample of a fold keeps enough distinct rows: at the smallest n accepted with bootstrap,
    200 rounds run and give finite intervals for every part."""
    need = rows_needed(4 + 4 + 3, 1) * 2
    rng = np.random.default_rng(3)
    y = rng.standard_normal((need, 3))
    x1, x2 = y @ rng.standard_normal((3, 4)) + rng.standard_normal((need, 4)), rng.standard_normal((need, 4))
    result = pid_flow(x1, x2, y, dims=(4, 4, 3), gaussianize=False, bootstrap=200, seed=1)
    assert set(result.ci) >= {"redundancy", "unique1", "unique2", "synergy", "total"}
    for lo, hi in result.ci.values():
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
    assert result.ci["total"][1] > 1.0  # the source carries information: not a degenerate draw


@pytest.mark.parametrize("gaussianize", [False, True])
def test_scaling_a_source_by_1e160_changes_nothing(gaussianize):
    x1, x2, y = _system(300, seed=2)
    options = {"dims": (3, 2, 3), "gaussianize": gaussianize,
               "flow_options": {"max_epochs": 3}} if gaussianize else {"dims": (3, 2, 3), "gaussianize": False}
    plain = pid_flow(x1, x2, y, **options).pid
    huge = pid_flow(x1 * 1e160, x2 * 1e-150, y * 3e5, **options).pid
    for part in ("redundancy", "unique1", "unique2", "synergy"):
        assert getattr(huge, part) == pytest.approx(getattr(plain, part), abs=1e-6), part


def test_scale_free_keeps_relative_column_scales():
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]]) * 1e300
    z = scale_free(x)
    assert np.all(np.isfinite(z)) and np.sqrt(np.mean(z**2)) == pytest.approx(1.0)
    assert z[:, 1] == pytest.approx(10 * z[:, 0])
