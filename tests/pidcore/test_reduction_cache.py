"""Reductions remembered by content (pidcore.gaussianize.latents): a knockout run that shares its baseline's
vision features and target reduces only what changed, with the same numbers and the same warnings."""

import warnings

import numpy as np

import pidcore.gaussianize.latents as latents
from pidcore.gaussianize.latents import PipelineWarning, clear_reduction_cache
from pidcore.pipeline.layerwise import layerwise
from pidcore.synthetic import latent_covariance


def _system(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(6), latent_covariance((2, 2, 2), seed=1), size=n)
    mix = rng.normal(size=(2, 40))
    return z[:, :2] @ mix + 0.5 * rng.normal(size=(n, 40)), z[:, 2:4] @ mix + 0.5 * rng.normal(size=(n, 40)), z[:, 4:]


def test_a_second_run_sharing_sources_reduces_only_what_changed_and_gives_the_same_numbers(monkeypatch):
    x1, x2, y = _system(0)
    _, other_x2, _ = _system(1)
    calls = []
    real = latents._reduce_uncached
    monkeypatch.setattr(latents, "_reduce_uncached", lambda x, *a: calls.append(x.shape) or real(x, *a))
    clear_reduction_cache()
    options = {"dims": (4, 4, 2), "gaussianize": "copula", "bootstrap": 20}
    layerwise([x1], [x2], y, **options)
    first = len(calls)
    assert first == 3  # y, x1, x2
    knocked = layerwise([x1], [other_x2], y, **options).layers[0]
    assert len(calls) == first + 1  # only the changed source
    clear_reduction_cache()
    fresh = layerwise([x1], [other_x2], y, **options).layers[0]
    assert len(calls) == first + 4
    assert knocked.pid == fresh.pid and knocked.ci == fresh.ci
    np.testing.assert_array_equal(knocked.latents, fresh.latents)


def test_a_remembered_low_rank_reduction_still_warns():
    rng = np.random.default_rng(3)
    x1, x2, y = _system(2)
    low_rank = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 40))  # rank 3 < 4 requested
    clear_reduction_cache()
    for _ in range(2):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            layerwise([x1], [low_rank], y, dims=(4, 4, 2), gaussianize="none", bootstrap=0)
        kinds = [w.message.kind for w in seen if isinstance(w.message, PipelineWarning)]
        assert kinds.count("low-rank") == 1
