import warnings

import numpy as np
import pytest
import torch

from pidcore.estimators.estimate import plugin_bias
from pidcore.estimators.pid import gaussian_pid
from pidcore.pipeline.layerwise import layerwise, pid_flow

torch.set_num_threads(1)
PARTS = ("redundancy", "unique1", "unique2", "synergy")
FAST = {"max_epochs": 4, "patience": 2}


def _system(n, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=(n, 2))
    x2 = rng.normal(size=(n, 2))
    x2[:, 0] += 0.5 * x1[:, 0]
    y = x1[:, :1] + 0.8 * x2[:, 1:] + 0.7 * rng.normal(size=(n, 1))
    return x1, x2, y, np.hstack([x1, x2, y])


def _truth():
    # x1 ~ N(0, I2); x2 = 0.5 x1[0] e1 + N(0, I2); y = x1[0] + 0.8 x2[1] + 0.7 eps
    a = np.zeros((5, 5))  # rows: x1a x1b x2a x2b y in terms of independent noises (5 of them)
    a[0, 0] = a[1, 1] = 1
    a[2, 0], a[2, 2] = 0.5, 1
    a[3, 3] = 1
    a[4, 0], a[4, 3], a[4, 4] = 1, 0.8, 0.7
    return gaussian_pid(a @ a.T, (2, 2, 1))


def test_gaussian_system_matches_truth():
    x1, x2, y, _ = _system(20000)
    truth = _truth()
    result = pid_flow(x1, x2, y, dims=(2, 2, 1), flow_options=FAST)
    for part in PARTS:
        assert abs(getattr(result.pid, part) - getattr(truth, part)) < 0.03, part
    np.testing.assert_allclose(result.pointwise.mean(axis=0), [getattr(result.pid, p) for p in PARTS], atol=1e-10)
    assert result.pointwise.shape == (20000, 4)


def test_elementwise_nonlinear_maps(capsys):
    x1, x2, y, _ = _system(6000, seed=2)
    truth = _truth()
    warped = (x1 ** 3, np.sinh(2 * x2), np.exp(y))
    flowed = pid_flow(*warped, dims=(2, 2, 1))
    plain = pid_flow(*warped, dims=(2, 2, 1), gaussianize=False)
    err_flow = max(abs(getattr(flowed.pid, p) - getattr(truth, p)) for p in PARTS)
    err_plain = max(abs(getattr(plain.pid, p) - getattr(truth, p)) for p in PARTS)
    with capsys.disabled():
        print(f"\nmax error, bits: gaussianize=True {err_flow:.3f}, gaussianize=False {err_plain:.3f}")
    assert err_flow < 0.08
    assert err_plain > err_flow + 0.1


def test_bootstrap_ci_contains_truth_and_determinism():
    cov = np.array([[1.0, 0.3, 0.8], [0.3, 1.0, 0.6], [0.8, 0.6, 1.2]])
    x1, x2, y = np.random.default_rng(4).multivariate_normal(np.zeros(3), cov, size=3000).T[:, :, None]
    truth = gaussian_pid(cov, (1, 1, 1))
    a = pid_flow(x1, x2, y, dims=(1, 1, 1), gaussianize=False, bootstrap=200, seed=5)
    b = pid_flow(x1, x2, y, dims=(1, 1, 1), gaussianize=False, bootstrap=200, seed=5)
    assert a.pid == b.pid and a.ci == b.ci
    for part in PARTS:
        lo, hi = a.ci[part]
        assert lo <= getattr(truth, part) <= hi, part


def test_flow_determinism_and_layerwise_equals_per_layer():
    x1, x2, y, _ = _system(800, seed=6)
    calls = []
    layers = layerwise([x1, x1 ** 3], [x2, x2], y, dims=(2, 2, 1), seed=3, flow_options=FAST, gaussianize="flow",
                       progress=lambda fraction, message: calls.append((fraction, message)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    # 2 layers x 2 sources + the target, 2 folds each: 10 flows, reported while they train
    assert "normalizing flows 10/10 trained" in [message for _, message in calls]
    layer_steps = [message for _, message in calls if message.startswith("PID") and "bootstrap" not in message]
    assert layer_steps == ["PID of layer 1/2", "PID of layer 2/2"]
    # the bootstrap loop reports too (at least every TICK_S), so a caller can stop it
    assert "PID of layer 2/2: bootstrap round 1/200" in [message for _, message in calls]
    for layer, a in zip(layers.layers, (x1, x1 ** 3), strict=True):
        single = pid_flow(a, x2, y, dims=(2, 2, 1), seed=3, flow_options=FAST, gaussianize="flow")
        assert single.pid == layer.pid
        np.testing.assert_array_equal(single.pointwise, layer.pointwise)
    assert layers.synergy.shape == (2,)


@pytest.mark.parametrize("change, message", [
    (lambda a, b, c: (np.where(np.arange(len(a))[:, None] == 3, np.nan, a), b, c), "NaN"),
    (lambda a, b, c: (a, b, np.full_like(c, np.inf)), "inf"),
    (lambda a, b, c: (np.ones_like(a), b, c), "constant"),
    (lambda a, b, c: (a, np.full_like(b, 3.0), c), "x2.*constant"),
    (lambda a, b, c: (a[:-1], b, c), "mismatched lengths"),
    (lambda a, b, c: (a[:5], b[:5], c[:5]), "too few samples"),
])
def test_bad_input(change, message):
    x1, x2, y, _ = _system(100)
    with pytest.raises(ValueError, match=message):
        pid_flow(*change(x1, x2, y), dims=(2, 2, 1), gaussianize=False)


def test_low_rank_source_keeps_its_rank_and_matches_the_full_rank_view():
    """A language source living in a 2-D subspace of 10 features (like embeddings of a few question
    templates) is reduced to its rank with a warning; the PID equals that of its 2 coordinates."""
    x1, x2, y, _ = _system(3000, seed=3)
    embed = np.random.default_rng(9).normal(size=(2, 10))
    with pytest.warns(RuntimeWarning, match="rank 2 < 6"):
        low = pid_flow(x1, x2 @ embed, y, dims=(2, 6, 1), gaussianize=False)
    direct = pid_flow(x1, x2, y, dims=(2, 2, 1), gaussianize=False)
    for part in PARTS:  # the plug-in is exactly invariant; the corrected parts up to the Monte Carlo error of
        assert abs(getattr(low.plugin, part) - getattr(direct.plugin, part)) < 1e-6, part  # the union's bias
        assert abs(getattr(low.pid, part) - getattr(direct.pid, part)) < 1e-3, part


def test_target_that_is_a_function_of_one_source_is_capped_not_an_error():
    """Five question templates, and an answer that depends on the template only (as when a knockout hides
    the image from the answer): Gaussian information would be infinite; it is capped near 10 bits per
    deterministic direction, with a warning, and the rest of the decomposition stays sane."""
    rng = np.random.default_rng(11)
    template = rng.integers(0, 5, size=400)
    x2 = np.eye(5)[template] @ rng.normal(size=(5, 6))
    y = np.eye(5)[template] @ rng.normal(size=(5, 2))
    x1 = rng.normal(size=(400, 3))
    with pytest.warns(RuntimeWarning, match="deterministic"):
        result = pid_flow(x1, x2, y, dims=(3, 4, 2), gaussianize=False)
    pid = result.pid
    assert 10.0 < pid.unique2 < 25.0  # two capped directions of about 10 bits each
    assert pid.unique1 < 0.05 and pid.redundancy < 0.05
    np.testing.assert_allclose(result.pointwise.mean(axis=0), [getattr(pid, p) for p in PARTS], atol=1e-8)



def test_small_samples_warn_with_the_exact_bias_which_the_correction_removes():
    """Independent sources and target (true PID 0), 80 samples for 6+6+4 dimensions: the warning states the
    exact expected bias of the plug-in total; over 30 seeds the plug-in total averages that bias and the
    corrected total averages 0 (within 3 standard errors)."""
    rng = np.random.default_rng(5)
    x1, x2, y = rng.normal(size=(80, 6)), rng.normal(size=(80, 6)), rng.normal(size=(80, 4))
    with pytest.warns(RuntimeWarning, match=r"the plug-in total is \d+\.\d\d bits too high") as caught:
        small = pid_flow(x1, x2, y, dims=(6, 6, 4), gaussianize=False, bootstrap=0)
    expected = plugin_bias((6, 6, 4), small.samples_per_covariance)
    assert expected > 0.3
    assert any(f"{expected:.2f} bits too high" in str(w.message) for w in caught)
    plugin, corrected = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(30):
            rng = np.random.default_rng(100 + seed)
            x1, x2, y = rng.normal(size=(80, 6)), rng.normal(size=(80, 6)), rng.normal(size=(80, 4))
            result = pid_flow(x1, x2, y, dims=(6, 6, 4), gaussianize=False, bootstrap=0, seed=seed)
            plugin.append(result.plugin.total)
            corrected.append(result.pid.total)
    error = np.std(plugin) / np.sqrt(len(plugin))
    assert abs(np.mean(plugin) - expected) < 3 * error
    assert abs(np.mean(corrected)) < 3 * np.std(corrected) / np.sqrt(len(corrected))
    rng = np.random.default_rng(6)
    x1, x2, y = rng.normal(size=(4000, 6)), rng.normal(size=(4000, 6)), rng.normal(size=(4000, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        large = pid_flow(x1, x2, y, dims=(6, 6, 4), gaussianize=False, bootstrap=0)
    assert abs(large.pid.total) < 0.02
