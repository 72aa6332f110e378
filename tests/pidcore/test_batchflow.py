"""Batched flow training (pidcore.gaussianize.batchflow via fit_gaussianizers) against independent nflows fits."""

import numpy as np
import pytest
import torch

from pidcore.estimators.pid import gaussian_pid
from pidcore.gaussianize.batchflow import StackedFlows, train_flows
from pidcore.gaussianize.flows import FlowGaussianizer, fit_gaussianizers, transform_many
from pidcore.pipeline.layerwise import layerwise, pid_flow

torch.set_num_threads(1)
PARTS = ("redundancy", "unique1", "unique2", "synergy")


def _warped(n, d, seed):
    """sinh of correlated Gaussians: skewed, heavy-tailed and dependent across columns."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    return np.sinh(g / g.std(axis=0))


def _held_out_log_prob(model, x):
    """Mean log-density (nats) of the flow on marginally Gaussianized samples."""
    z = torch.as_tensor(model.marginal_.transform(x), dtype=torch.float32)
    with torch.no_grad():
        return float(model.flow_.log_prob(z).mean())


def test_stacked_log_prob_and_noise_equal_each_nflows_flow():
    flows = [FlowGaussianizer(seed=s)._build(5) for s in range(3)]
    torch.manual_seed(0)
    for flow in flows:  # non-trivial splines, not the near-identity initialisation
        for p in flow.parameters():
            p.data.normal_(0, 0.5)
    stack = StackedFlows(flows)
    x = 2.5 * torch.randn(3, 300, 5)  # some inputs beyond the tail bound 4 (linear tails)
    assert bool((x.abs() > 4).any())
    got = stack.log_prob(x, stack.params, stack.perms)
    noise = stack.forward(x, stack.params, stack.perms)[0]
    with torch.no_grad():
        for m, flow in enumerate(flows):
            torch.testing.assert_close(got[m], flow.log_prob(x[m]), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(noise[m], flow.transform_to_noise(x[m]), atol=1e-5, rtol=1e-5)


def test_batched_fit_matches_independent_fits_in_quality():
    data = [_warped(1200, 3, s) for s in range(6)]
    train, test = [d[:600] for d in data], [d[600:] for d in data]
    seeds = list(range(6))
    batched = fit_gaussianizers(train, seeds)
    alone = [FlowGaussianizer(seed=s).fit(x) for s, x in zip(seeds, train, strict=True)]
    marginal = [FlowGaussianizer(seed=s, max_epochs=1, learning_rate=1e-9).fit(x) for s, x in zip(seeds, train,
                                                                                                   strict=True)]
    score = {name: np.mean([_held_out_log_prob(m, x) for m, x in zip(models, test, strict=True)])
             for name, models in (("batched", batched), ("alone", alone), ("marginal", marginal))}
    assert abs(score["batched"] - score["alone"]) < 0.1, score
    assert score["batched"] > score["marginal"] + 1.0, score  # the flows learned the joint warp


def test_batched_fit_does_not_depend_on_its_company_chunks_or_threads():
    xs = [_warped(500, 4, s) for s in range(5)] + [_warped(700, 4, 9)]  # two shapes: two groups
    seeds = [3, 4, 5, 6, 7, 8]
    reference = fit_gaussianizers(xs, seeds, threads=2, max_epochs=8)
    variants = [fit_gaussianizers(xs, seeds, threads=1, chunk=c, max_epochs=8) for c in (2, 1)]
    alone = fit_gaussianizers(xs[:1], seeds[:1], threads=1, max_epochs=8)[0]
    for models in variants:
        for a, b, x in zip(reference, models, xs, strict=True):
            assert a.epochs_ == b.epochs_
            np.testing.assert_array_equal(a.transform(x), b.transform(x))
    np.testing.assert_array_equal(alone.transform(xs[0]), reference[0].transform(xs[0]))
    assert len({m.epochs_ for m in reference}) > 1  # each model stopped on its own


def test_each_batched_model_is_invertible_and_transform_many_matches():
    xs = [_warped(400, 3, s) for s in range(4)]
    models = fit_gaussianizers(xs, [1, 2, 3, 4])
    many = transform_many(models, xs)
    for model, x, out in zip(models, xs, many, strict=True):
        np.testing.assert_allclose(out, model.transform(x), rtol=0, atol=1e-6)
        z = torch.as_tensor(model.marginal_.transform(x), dtype=torch.float32)
        with torch.no_grad():
            back = model.flow_._transform.inverse(model.flow_.transform_to_noise(z))[0]
        torch.testing.assert_close(back, z, atol=1e-4, rtol=1e-4)


def test_early_stopping_and_epoch_cap_are_per_model():
    easy = np.random.default_rng(0).normal(size=(600, 3))  # already Gaussian: stops early
    models = fit_gaussianizers([easy, _warped(600, 3, 1)], [0, 1], max_epochs=12)
    alone = [fit_gaussianizers([x], [s], max_epochs=12)[0] for x, s in ((easy, 0), (_warped(600, 3, 1), 1))]
    assert [m.epochs_ for m in models] == [m.epochs_ for m in alone]
    assert all(1 <= m.epochs_ <= 12 for m in models)


def test_bad_batched_input():
    x = _warped(100, 2, 0)
    with pytest.raises(ValueError, match="one seed per sample set"):
        fit_gaussianizers([x, x], [1])
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        fit_gaussianizers([x], [1], threads=0)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        fit_gaussianizers([x], [1], chunk=0)
    with pytest.raises(ValueError, match="one sample set per model"):
        transform_many(fit_gaussianizers([x], [1], max_epochs=1), [x, x])
    flows = [FlowGaussianizer()._build(2) for _ in range(2)]
    with pytest.raises(ValueError, match="common shape"):
        train_flows(flows, [torch.zeros(10, 2), torch.zeros(12, 2)], [0, 1], max_epochs=1, batch_size=4,
                    learning_rate=1e-2, validation=0.2, patience=1)


def _gaussian_system(n, seed):
    cov = np.array([[1.0, 0.3, 0.6, 0.2, 0.7], [0.3, 1.0, 0.1, 0.4, 0.5], [0.6, 0.1, 1.0, 0.2, 0.6],
                    [0.2, 0.4, 0.2, 1.0, 0.5], [0.7, 0.5, 0.6, 0.5, 1.5]])
    g = np.random.default_rng(seed).multivariate_normal(np.zeros(5), cov, size=n)
    return g[:, :2], g[:, 2:4], g[:, 4:], gaussian_pid(cov, (2, 2, 1))


def test_pipeline_flows_do_not_depend_on_threads():
    """The pipeline's flows are the joint flows (pidcore.gaussianize.jointflow; the batched per-variable flows above are a
    library tool since the Gaussianization modes): the folds train on 1 or 2 threads with the same results."""
    x1, x2, y, truth = _gaussian_system(2000, seed=1)
    warped = (x1 ** 3, np.sinh(2 * x2), np.exp(y))
    one = pid_flow(*warped, dims=(2, 2, 1), gaussianize="flow", flow_options={"threads": 1, "max_epochs": 5})
    two = pid_flow(*warped, dims=(2, 2, 1), gaussianize="flow", flow_options={"threads": 2, "max_epochs": 5})
    for part in PARTS:
        assert getattr(one.pid, part) == pytest.approx(getattr(two.pid, part), rel=1e-6, abs=1e-9), part
        assert abs(getattr(one.pid, part) - getattr(truth, part)) < 0.06, part


def test_layerwise_threads_do_not_change_results():
    """Threads change only how flows are grouped into batches: the same results up to float32 rounding
    (some CPUs' batched-matmul kernels round differently for batches of one and two flows)."""
    x1, x2, y, _ = _gaussian_system(600, seed=2)
    options = {"max_epochs": 4, "patience": 2}
    one = layerwise([x1, x1 ** 3], [x2, x2], y, dims=(2, 2, 1), seed=4, flow_options={**options, "threads": 1})
    two = layerwise([x1, x1 ** 3], [x2, x2], y, dims=(2, 2, 1), seed=4, flow_options={**options, "threads": 2})
    for a, b in zip(one.layers, two.layers, strict=True):
        for part in PARTS:
            assert getattr(a.pid, part) == pytest.approx(getattr(b.pid, part), rel=1e-7, abs=1e-8), part
        np.testing.assert_allclose(a.pointwise, b.pointwise, rtol=0, atol=1e-5)
