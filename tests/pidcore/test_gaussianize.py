import numpy as np
import torch
from scipy import stats

from pidcore.gaussianize import FlowGaussianizer

torch.set_num_threads(1)


def test_flow_makes_skewed_data_gaussian_and_is_deterministic():
    rng = np.random.default_rng(1)
    x = np.stack([rng.exponential(size=3000), rng.normal(size=3000) ** 3], axis=1)
    a = FlowGaussianizer(seed=3, max_epochs=5).fit(x).transform(x)
    b = FlowGaussianizer(seed=3, max_epochs=5).fit(x).transform(x)
    np.testing.assert_array_equal(a, b)
    for column in a.T:
        assert abs(stats.skew(column)) < 0.2
        assert abs(column.std() - 1.0) < 0.05
