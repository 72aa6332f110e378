"""gaussian_pid / solve_union: ground truths, optimality, invariances, additivity, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from pidcore.estimators.info import gaussian_mi
from pidcore.estimators.pid import PID, gaussian_pid, solve_union

PARTS = ("redundancy", "unique1", "unique2", "synergy")


def random_covariance(dim, rng, samples_per_dim=3):
    factor = rng.standard_normal((dim, samples_per_dim * dim))
    return factor @ factor.T / (samples_per_dim * dim)


def parts(pid: PID) -> np.ndarray:
    return np.array([getattr(pid, name) for name in PARTS])


def single_source_mis(cov, dims):
    d1, d2, dy = dims
    x1, x2, y = range(d1), range(d1, d1 + d2), range(d1 + d2, d1 + d2 + dy)
    return gaussian_mi(cov, x1, y), gaussian_mi(cov, x2, y), gaussian_mi(cov, range(d1 + d2), y)


def separate_targets_system(rng, d1=3, d2=2, dy1=2, dy2=2, noise=0.5):
    """X1 = A Y1 + noise, X2 = B Y2 + noise, independent Y1, Y2; cov of (X1, X2, Y1, Y2)."""
    a = rng.standard_normal((d1, dy1))
    b = rng.standard_normal((d2, dy2))
    mix = np.zeros((d1 + d2, dy1 + dy2))
    mix[:d1, :dy1] = a
    mix[d1:, dy1:] = b
    cov_y = np.eye(dy1 + dy2)
    cov_x = mix @ mix.T + noise * np.eye(d1 + d2)
    cov = np.block([[cov_x, mix @ cov_y], [cov_y @ mix.T, cov_y]])
    return cov, (d1, d2, dy1 + dy2)


# --- closed forms and ground truths -------------------------------------------------------------


def test_mmi_closed_form():
    rng = np.random.default_rng(0)
    dims = (3, 2, 2)
    cov = random_covariance(sum(dims), rng)
    pid = gaussian_pid(cov, dims, measure="mmi")
    i1, i2, i12 = single_source_mis(cov, dims)
    assert pid.redundancy == pytest.approx(min(i1, i2), abs=1e-12)
    assert pid.unique1 == pytest.approx(i1 - min(i1, i2), abs=1e-12)
    assert pid.unique2 == pytest.approx(i2 - min(i1, i2), abs=1e-12)
    assert pid.total == pytest.approx(i12, abs=1e-12)
    assert parts(pid).sum() == pytest.approx(pid.total, abs=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_scalar_target_broja_equals_mmi(seed):
    rng = np.random.default_rng(100 + seed)
    d1, d2 = (int(d) for d in rng.integers(1, 6, size=2))
    dims = (d1, d2, 1)
    cov = random_covariance(sum(dims), rng)
    broja = gaussian_pid(cov, dims, measure="broja")
    mmi = gaussian_pid(cov, dims, measure="mmi")
    np.testing.assert_allclose(parts(broja), parts(mmi), atol=1e-4)
    assert min(broja.unique1, broja.unique2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_separate_targets_have_no_redundancy_or_synergy(seed):
    cov, dims = separate_targets_system(np.random.default_rng(seed))
    i1, i2, i12 = single_source_mis(cov, dims)
    broja = gaussian_pid(cov, dims, measure="broja")
    assert broja.redundancy == pytest.approx(0.0, abs=1e-6)
    assert broja.synergy == pytest.approx(0.0, abs=1e-6)
    assert broja.unique1 == pytest.approx(i1, abs=1e-6)
    assert broja.unique2 == pytest.approx(i2, abs=1e-6)
    mmi = gaussian_pid(cov, dims, measure="mmi")
    # MMI cannot see that the sources speak about different parts of Y: it reports the smaller
    # MI as redundancy and the same amount as synergy.
    assert mmi.redundancy == pytest.approx(min(i1, i2), abs=1e-9)
    assert mmi.redundancy > 0.1
    assert mmi.synergy == pytest.approx(mmi.redundancy, abs=1e-9)


def test_near_pure_redundancy():
    rng = np.random.default_rng(7)
    d1, dy = 3, 2
    base = random_covariance(d1 + dy, rng)  # (X1, Y)
    # X2 = X1 + independent noise of variance 1e-6
    cov = np.zeros((2 * d1 + dy,) * 2)
    x1, x2, y = slice(0, d1), slice(d1, 2 * d1), slice(2 * d1, None)
    for rows, cols, block in [
        (x1, x1, base[:d1, :d1]), (x1, x2, base[:d1, :d1]), (x2, x1, base[:d1, :d1]),
        (x2, x2, base[:d1, :d1] + 1e-6 * np.eye(d1)), (x1, y, base[:d1, d1:]), (x2, y, base[:d1, d1:]),
        (y, x1, base[d1:, :d1]), (y, x2, base[d1:, :d1]), (y, y, base[d1:, d1:]),
    ]:  # fmt: skip
        cov[rows, cols] = block
    dims = (d1, d1, dy)
    pid = gaussian_pid(cov, dims)
    i1 = gaussian_mi(base, range(d1), range(d1, d1 + dy))
    assert i1 > 0.2
    assert pid.redundancy == pytest.approx(i1, abs=1e-3)
    np.testing.assert_allclose([pid.unique1, pid.unique2, pid.synergy], 0.0, atol=1e-3)


# --- optimality of the closed form ---------------------------------------------------------------


def noise_whitened_channels(cov, dims):
    """G1, G2 with Xk = Gk Y_w + Zk, Cov Zk = I, Y_w white (the union problem's data)."""
    d1, d2, _ = dims
    y = slice(d1 + d2, None)
    y_chol = np.linalg.cholesky(cov[y, y])
    channels = []
    for source in (slice(0, d1), slice(d1, d1 + d2)):
        gain = np.linalg.solve(y_chol, cov[y, source]).T
        noise_chol = np.linalg.cholesky(cov[source, source] - gain @ gain.T)
        channels.append(np.linalg.solve(noise_chol, gain))
    return channels


def union_objective_bits(cross, g1, g2):
    """I_Q(X1, X2; Y) in bits when the whitened noises have cross-covariance ``cross``."""
    d1, d2 = cross.shape
    noise = np.eye(d1 + d2)
    noise[:d1, d1:] = cross
    noise[d1:, :d1] = cross.T
    g = np.vstack([g1, g2])
    return 0.5 * (np.linalg.slogdet(noise + g @ g.T)[1] - np.linalg.slogdet(noise)[1]) / np.log(2)


def contraction(free):
    """Smooth map from any matrix onto strict contractions: M (I + M^T M)^(-1/2)."""
    values, vectors = np.linalg.eigh(np.eye(free.shape[1]) + free.T @ free)
    return free @ (vectors / np.sqrt(values)) @ vectors.T


@pytest.mark.parametrize("dims", [(2, 2, 2), (2, 3, 3), (3, 2, 2)])
def test_closed_form_matches_numerical_minimum(dims):
    rng = np.random.default_rng(sum(dims))
    cov = random_covariance(sum(dims), rng)
    g1, g2 = noise_whitened_channels(cov, dims)
    union = solve_union(cov, dims).union_info
    shape = (dims[0], dims[1])

    def objective(flat):
        return union_objective_bits(contraction(flat.reshape(shape)), g1, g2)

    # no feasible coupling beats the closed form ...
    random_values = [objective(3 * rng.standard_normal(shape).ravel()) for _ in range(300)]
    assert min(random_values) >= union - 1e-12
    # ... and a numerical minimisation from several starts reaches it
    best = min(
        minimize(objective, 2 * rng.standard_normal(np.prod(shape)), method="BFGS", options={"gtol": 1e-11}).fun
        for _ in range(4)
    )
    assert best >= union - 1e-10
    assert best == pytest.approx(union, abs=1e-7)


@pytest.mark.parametrize("dims", [(4, 4, 2), (3, 5, 4), (8, 8, 4)])
def test_cov_q_is_a_feasible_minimiser(dims):
    rng = np.random.default_rng(11)
    cov = 5.0 * random_covariance(sum(dims), rng)
    solution = solve_union(cov, dims)
    d1, d2, _ = dims
    d12 = d1 + d2
    cov_q = solution.cov_q
    # same (X1, Y), (X2, Y) marginals (indeed every block but the X1-X2 cross block)
    keep = np.ones_like(cov, dtype=bool)
    keep[:d1, d1:d12] = keep[d1:d12, :d1] = False
    np.testing.assert_array_equal(cov_q[keep], cov[keep])
    np.testing.assert_allclose(cov_q, cov_q.T, atol=0)
    assert np.linalg.eigvalsh(cov_q).min() > -1e-10 * np.trace(cov)
    # it attains the union information: Cov_Q(Y | X) from cov_q is the reported posterior
    cross_xy = cov_q[:d12, d12:]
    posterior = cov_q[d12:, d12:] - cross_xy.T @ np.linalg.pinv(cov_q[:d12, :d12], rcond=1e-10) @ cross_xy
    np.testing.assert_allclose(posterior, solution.posterior_cov, atol=1e-9)
    attained = 0.5 * (np.linalg.slogdet(cov[d12:, d12:])[1] - np.linalg.slogdet(posterior)[1]) / np.log(2)
    assert attained == pytest.approx(solution.union_info, abs=1e-9)


# --- invariances and additivity ------------------------------------------------------------------


@pytest.mark.parametrize("block", [0, 1, 2])
def test_invariant_to_invertible_linear_maps(block):
    rng = np.random.default_rng(20 + block)
    dims = (4, 3, 3)
    cov = random_covariance(sum(dims), rng)
    starts = np.cumsum((0,) + dims)
    transform = np.eye(sum(dims))
    size = dims[block]
    q, _ = np.linalg.qr(rng.standard_normal((size, size)))
    map_ = q @ np.diag(rng.uniform(0.3, 3.0, size)) @ np.linalg.qr(rng.standard_normal((size, size)))[0]
    transform[starts[block] : starts[block + 1], starts[block] : starts[block + 1]] = map_ + 0.2 * rng.standard_normal(
        (size, size)
    )
    mapped = transform @ cov @ transform.T
    for measure in ("broja", "mmi"):
        np.testing.assert_allclose(
            parts(gaussian_pid(mapped, dims, measure)), parts(gaussian_pid(cov, dims, measure)), atol=1e-5
        )


def stack_independent(cov_a, dims_a, cov_b, dims_b):
    """Covariance of ((X1a, X1b), (X2a, X2b), (Ya, Yb)) for independent systems a and b."""
    order_a = np.split(np.arange(sum(dims_a)), np.cumsum(dims_a)[:2])
    order_b = np.split(np.arange(sum(dims_b)) + sum(dims_a), np.cumsum(dims_b)[:2])
    order = np.concatenate([np.concatenate([a, b]) for a, b in zip(order_a, order_b, strict=True)])
    joint = np.zeros((sum(dims_a) + sum(dims_b),) * 2)
    joint[: sum(dims_a), : sum(dims_a)] = cov_a
    joint[sum(dims_a) :, sum(dims_a) :] = cov_b
    return joint[np.ix_(order, order)], tuple(a + b for a, b in zip(dims_a, dims_b, strict=True))


@pytest.mark.parametrize("generic", [False, True])
def test_independent_systems_add(generic):
    rng = np.random.default_rng(30)
    if generic:
        dims_a, dims_b = (2, 3, 2), (3, 1, 2)
        cov_a = random_covariance(sum(dims_a), rng)
        cov_b = random_covariance(sum(dims_b), rng)
    else:
        cov_a, dims_a = separate_targets_system(rng, 2, 3, 1, 2)
        cov_b, dims_b = separate_targets_system(rng, 3, 1, 2, 1)
    joint, dims = stack_independent(cov_a, dims_a, cov_b, dims_b)
    expected = parts(gaussian_pid(cov_a, dims_a)) + parts(gaussian_pid(cov_b, dims_b))
    np.testing.assert_allclose(parts(gaussian_pid(joint, dims)), expected, atol=1e-9)


def test_swapping_sources_swaps_unique_parts():
    rng = np.random.default_rng(40)
    dims = (3, 4, 3)
    cov = random_covariance(sum(dims), rng)
    order = np.r_[3:7, 0:3, 7:10]
    swapped = gaussian_pid(cov[np.ix_(order, order)], (4, 3, 3))
    pid = gaussian_pid(cov, dims)
    np.testing.assert_allclose(parts(swapped), [pid.redundancy, pid.unique2, pid.unique1, pid.synergy], atol=1e-12)


@st.composite
def covariances(draw):
    dims = tuple(draw(st.integers(1, 5)) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))
    conditioning = draw(st.sampled_from([1.2, 3, 10]))  # samples per dimension: smaller -> worse conditioned
    rng = np.random.default_rng(seed)
    size = sum(dims)
    factor = rng.standard_normal((size, int(np.ceil(conditioning * size))))
    scales = np.exp(rng.uniform(-4, 4, size))
    cov = factor @ factor.T * scales[:, None] * scales[None, :]
    return cov, dims


@settings(max_examples=60, deadline=None, derandomize=True)
@given(covariances())
def test_parts_are_nonnegative_and_sum_to_total(case):
    cov, dims = case
    i1, i2, i12 = single_source_mis(cov, dims)
    broja = gaussian_pid(cov, dims, "broja")
    mmi = gaussian_pid(cov, dims, "mmi")
    for pid in (broja, mmi):
        assert np.all(parts(pid) >= 0)
        assert parts(pid).sum() == pytest.approx(pid.total, abs=1e-9)
        assert pid.total == pytest.approx(i12, abs=1e-7)
        assert pid.redundancy + pid.unique1 == pytest.approx(i1, abs=1e-7)
        assert pid.redundancy + pid.unique2 == pytest.approx(i2, abs=1e-7)
    # MMI's union information max(I1, I2) is a lower bound of BROJA's
    assert broja.redundancy <= mmi.redundancy + 1e-9
    solution = solve_union(cov, dims)
    assert solution.union_info == pytest.approx(broja.total - broja.synergy, abs=1e-12)


# --- bad input -----------------------------------------------------------------------------------


def good_covariance():
    return random_covariance(5, np.random.default_rng(50))


def with_entry(value):
    cov = good_covariance()
    cov[0, 1] = cov[1, 0] = value
    return cov


def asymmetric():
    cov = good_covariance()
    cov[0, 1] += 0.1
    return cov


def rank_deficient():
    factor = np.random.default_rng(51).standard_normal((5, 3))
    return factor @ factor.T


def duplicated_column():
    cov = good_covariance()
    cov[4, :] = cov[3, :]
    cov[:, 4] = cov[:, 3]
    return cov


@pytest.mark.parametrize("func", [gaussian_pid, solve_union])
@pytest.mark.parametrize(
    ("cov", "dims", "message"),
    [
        (with_entry(np.nan), (2, 2, 1), "NaN or inf"),
        (with_entry(np.inf), (2, 2, 1), "NaN or inf"),
        (asymmetric(), (2, 2, 1), "not symmetric"),
        (rank_deficient(), (2, 2, 1), "not positive definite|rank-deficient"),
        (duplicated_column(), (2, 2, 1), "not positive definite|rank-deficient"),
        (-good_covariance(), (2, 2, 1), "non-positive variance"),
        (good_covariance(), (2, 2, 2), "sum to 6"),
        (good_covariance(), (3, 2, 0), ">= 1"),
        (good_covariance(), (2, 2), "three integers"),
        (good_covariance(), (2.5, 1.5, 1), "three integers"),
        (good_covariance(), None, "three integers"),
        (np.ones((2, 3)), (1, 1, 1), "square"),
    ],
)
def test_bad_input_raises_value_error(func, cov, dims, message):
    with pytest.raises(ValueError, match=message):
        func(cov, dims)


def test_unknown_measure():
    with pytest.raises(ValueError, match="unknown measure"):
        gaussian_pid(np.eye(3), (1, 1, 1), measure="ccs")


def test_round_off_clipping_keeps_parts_valid_and_warns_only_on_large_clips():
    from pidcore.estimators.pid import _parts, _Terms

    terms = _Terms(i1=1.0, i2=0.5, i12=2.0, unique1=0.5, unique2=0.0)
    tiny = _parts(terms, 1.0 - 1e-12)  # round-off below the lower bound max(I1, I2)
    assert tiny.unique2 == 0.0 and tiny.redundancy == 0.5
    assert parts(tiny).sum() == pytest.approx(2.0, abs=1e-12)
    with pytest.warns(RuntimeWarning, match="ill-conditioned"):
        large = _parts(terms, 2.5)  # above min(I12, I1 + I2) = 1.5 by far
    assert np.all(parts(large) >= 0)
    assert large.synergy == pytest.approx(0.5) and large.redundancy == 0.0


# Output of the published ~G-PID solver (Venkatesh et al. 2023, praveenv253/gpid at b63967f,
# exact_gauss_tilde_pid, stopping tolerance 1e-6 bits) on these seeded covariances: [R, U1, U2, S].
GPID_REFERENCE = [
    (1, (2, 2, 2), [0.06007546, 0.06735908, 0.00733220, 0.01647104]),
    (2, (4, 3, 3), [0.16933962, 0.30553448, 0.04445557, 0.30691141]),
    (3, (8, 8, 4), [0.29499526, 0.22468686, 0.05168222, 0.40679365]),
    (4, (3, 6, 5), [0.14372652, 0.14498413, 0.26731663, 0.30127029]),
]


@pytest.mark.parametrize(("seed", "dims", "reference"), GPID_REFERENCE)
def test_agrees_with_published_gpid_solver(seed, dims, reference):
    rng = np.random.default_rng(seed)
    size = sum(dims)
    factor = rng.standard_normal((size, 3 * size))
    cov = factor @ factor.T / (3 * size)
    np.testing.assert_allclose(parts(gaussian_pid(cov, dims)), reference, atol=1e-6)
