"""The seed-faithful recipe: 95% of the raw features' variance, capped at what the questions support, then
Gaussianization of the kept components (PCA first)."""

from types import SimpleNamespace

import numpy as np

from pidcore.pipeline.validation import check_estimable
from pidcore.study.run import StudyRequest, analysis_request, seed_dims


def _features(n: int, width: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(vision=rng.normal(size=(2, n, width)), language=rng.normal(size=(2, n, width)),
                           target=rng.normal(size=(n, 6)), num_layers=2, n=n)


def test_counts_that_fit_are_kept_and_counted_on_the_raw_features():
    features = _features(600)
    dims = seed_dims(features, 0.95, bootstrap=200)
    assert "warning" not in dims and dims["dims"] == [max(dims["vision_per_layer"]), max(dims["language_per_layer"]), 6]
    assert 25 <= dims["dims"][0] <= 30  # white noise: 95% of the variance needs nearly every feature


def test_counts_the_questions_cannot_support_are_capped_with_a_warning_and_stay_estimable():
    features = _features(120)
    dims = seed_dims(features, 0.95, bootstrap=200)
    assert dims["capped_from"][0] >= 25 and "the seed recipe used" in dims["warning"]
    check_estimable(120, (30, 30, 6), tuple(dims["dims"]), folds=2, bootstrap=200, seed=0)  # does not raise
    assert sum(dims["dims"]) < sum(dims["capped_from"])


def test_the_seed_recipe_reduces_first_with_mmi():
    request = analysis_request(StudyRequest(), "demo", "color", "seed", None, dims=(5, 5, 3))
    assert request.reduce_first and request.measure == "mmi" and request.dims == (5, 5, 3)
    assert not analysis_request(StudyRequest(), "demo", "color", "pidflow", None).reduce_first
