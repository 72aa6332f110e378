"""One conformance suite: every estimator and Gaussianizer registered once, run through the same checks.

In the manner of scikit-learn's parametrize_with_checks: ESTIMATORS maps a name to a function
(x1, x2, y, seed) -> PIDFlowResult-like object with ``pid`` (and ``ci`` where intervals exist); CHECKS are
functions (estimate) -> None that assert. A known gap is declared as data in GAPS with its reason and is
reported as an expected failure (xfail, strict: a gap that closes fails until removed from GAPS); a looser bar
is declared in BARS with its reason. The table
of (estimator, check) outcomes is printed at the end of the test run (tests/pidcore/conftest.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import ortho_group

from pidcore.estimators.estimate import corrected_pid
from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import pid_flow

PARTS = ("redundancy", "unique1", "unique2", "synergy")
N, DIMS = 3000, (2, 2, 1)


def _cov():
    """A known Gaussian system with all four parts non-zero: the covariance of (x1 (2), x2 (2), y (1))."""
    a = np.zeros((5, 5))
    a[0, 0] = a[1, 1] = 1
    a[2, 0], a[2, 2] = 0.5, 1
    a[3, 3] = 1
    a[4, 0], a[4, 3], a[4, 4] = 1, 0.8, 0.7
    return a @ a.T


TRUTH = gaussian_pid(_cov(), DIMS)


def _sample(n=N, seed=0):
    z = np.random.default_rng(seed).multivariate_normal(np.zeros(5), _cov(), size=n)
    return z[:, :2], z[:, 2:4], z[:, 4:]


class _Exact:
    """A covariance-level estimator seen through samples: the population covariance is known exactly, so
    checks that transform samples transform the covariance instead (through the sample covariance)."""

    def __init__(self, pid):
        self.pid, self.ci = pid, {}


def _covariance_estimator(measure: str, corrected: bool):
    def estimate(x1, x2, y, seed=0):
        z = np.hstack([x1, x2, y])
        cov = np.cov(z, rowvar=False)
        dims = (x1.shape[1], x2.shape[1], y.shape[1])
        if corrected:
            return _Exact(corrected_pid(cov, dims, len(z), measure, seed=seed).corrected)
        return _Exact(gaussian_pid(cov, dims, measure))
    return estimate


def _pipeline(gaussianize: str, bootstrap: int = 0):
    def estimate(x1, x2, y, seed=0):
        dims = (x1.shape[1], x2.shape[1], y.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return pid_flow(x1, x2, y, dims=dims, gaussianize=gaussianize, bootstrap=bootstrap, seed=seed,
                            flow_options={"max_epochs": 3, "patience": 1})
    return estimate


#: Every estimator and Gaussianizer, registered once.
ESTIMATORS = {
    "gaussian_pid[broja]": _covariance_estimator("broja", corrected=False),
    "gaussian_pid[mmi]": _covariance_estimator("mmi", corrected=False),
    "corrected_pid[broja]": _covariance_estimator("broja", corrected=True),
    "pid_flow[none]": _pipeline("none"),
    "pid_flow[copula]": _pipeline("copula"),
    "pid_flow[auto]": _pipeline("auto"),
    "pid_flow[flow]": _pipeline("flow"),
}


def check_parts_sum_to_the_total(estimate):
    pid = estimate(*_sample()).pid
    assert abs(sum(getattr(pid, p) for p in PARTS) - pid.total) < 1e-9


def check_swapping_the_sources_swaps_the_unique_parts(estimate):
    x1, x2, y = _sample()
    a, b = estimate(x1, x2, y).pid, estimate(x2, x1, y).pid
    for p, q in (("redundancy", "redundancy"), ("unique1", "unique2"), ("unique2", "unique1"),
                 ("synergy", "synergy")):
        assert abs(getattr(a, p) - getattr(b, q)) < 0.02, (p, getattr(a, p), getattr(b, q))


def check_invariant_to_an_invertible_linear_map_of_a_source_and_the_target(estimate):
    x1, x2, y = _sample()
    rng = np.random.default_rng(1)
    mix = ortho_group.rvs(2, random_state=rng) @ np.diag([2.0, 0.5])
    a, b = estimate(x1, x2, y).pid, estimate(x1 @ mix, x2, -3.0 * y).pid
    assert max(abs(getattr(a, p) - getattr(b, p)) for p in PARTS) < 0.02


def check_invariant_to_a_monotone_map_of_each_feature(estimate, bar=0.05):
    x1, x2, y = _sample()
    a = estimate(x1, x2, y).pid
    b = estimate(np.sinh(x1), x2**3, np.exp(y)).pid
    assert max(abs(getattr(a, p) - getattr(b, p)) for p in PARTS) < bar


def check_within_its_bias_bar_on_a_known_system(estimate, bar=0.05):
    """|part - truth| <= 0.05 bits at n = 3,000 for (2, 2, 1) (plug-in bias of the total ~0.003 bits); with a
    scalar target MMI equals BROJA, so both measures meet it."""
    pid = estimate(*_sample(seed=3)).pid
    assert max(abs(getattr(pid, p) - getattr(TRUTH, p)) for p in PARTS) < bar


def check_intervals_cover_the_truth_over_seeds(estimate):
    """The total's 95% interval over 12 seeds at n = 400: at least 9 cover (P(<= 8 of 12) < 0.002 at 0.95)."""
    hits = 0
    for seed in range(12):
        result = estimate(*_sample(n=400, seed=100 + seed), seed=seed)
        lo, hi = result.ci["total"]
        hits += lo <= TRUTH.total <= hi
    assert hits >= 9, hits


CHECKS = {check.__name__[len("check_"):]: check for check in (
    check_parts_sum_to_the_total, check_swapping_the_sources_swaps_the_unique_parts,
    check_invariant_to_an_invertible_linear_map_of_a_source_and_the_target,
    check_invariant_to_a_monotone_map_of_each_feature, check_within_its_bias_bar_on_a_known_system,
    check_intervals_cover_the_truth_over_seeds)}

#: Known gaps, as data: (estimator, check) -> reason.
GAPS = {
    ("gaussian_pid[broja]", "invariant_to_a_monotone_map_of_each_feature"):
        "a Gaussian estimator of raw samples: a warp makes them non-Gaussian (the Gaussianizers' job)",
    ("gaussian_pid[mmi]", "invariant_to_a_monotone_map_of_each_feature"):
        "a Gaussian estimator of raw samples: a warp makes them non-Gaussian (the Gaussianizers' job)",
    ("corrected_pid[broja]", "invariant_to_a_monotone_map_of_each_feature"):
        "a Gaussian estimator of raw samples: a warp makes them non-Gaussian (the Gaussianizers' job)",
    ("pid_flow[none]", "invariant_to_a_monotone_map_of_each_feature"):
        "no Gaussianization: PCA only, so a warp's non-Gaussianity stays",
}
#: Looser bars, as data: (estimator, check) -> (bar in bits, reason).
BARS = {
    ("pid_flow[flow]", "invariant_to_a_monotone_map_of_each_feature"):
        (0.08, "the suite trains the flows for 3 epochs (speed); benchmarks/bench_gaussianize.py trains them fully"),
    ("pid_flow[flow]", "within_its_bias_bar_on_a_known_system"):
        (0.08, "the suite trains the flows for 3 epochs (speed); benchmarks/bench_gaussianize.py trains them fully"),
}
#: Checks an estimator cannot run (no intervals), as data.
NOT_APPLICABLE = {(name, "intervals_cover_the_truth_over_seeds") for name in ESTIMATORS if "pid_flow" not in name}
NOT_APPLICABLE |= {("pid_flow[flow]", "intervals_cover_the_truth_over_seeds")}  # 12 flow fits: the benchmarks'


def _cases():
    for name in ESTIMATORS:
        for check in CHECKS:
            if (name, check) in NOT_APPLICABLE:
                continue
            marks = [pytest.mark.xfail(reason=GAPS[(name, check)], strict=True)] if (name, check) in GAPS else []
            yield pytest.param(name, check, id=f"{name}-{check}", marks=marks)


@pytest.mark.parametrize("name, check", list(_cases()))
def test_conformance(name, check):
    estimator = ESTIMATORS[name]
    if check == "intervals_cover_the_truth_over_seeds":
        gaussianize = name[len("pid_flow["):-1]
        estimator = _pipeline(gaussianize, bootstrap=100)
    if (name, check) in BARS:
        CHECKS[check](estimator, bar=BARS[(name, check)][0])
    else:
        CHECKS[check](estimator)


def test_every_gap_names_a_registered_estimator_and_check():
    for name, check in set(GAPS) | NOT_APPLICABLE | set(BARS):
        assert name in ESTIMATORS and check in CHECKS, (name, check)
