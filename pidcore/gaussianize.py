"""Gaussianization: marginal quantile normalisation followed by an nflows spline MAF.

Both steps are invertible, so the mutual information between Gaussianized variables equals the
one between the originals (bits are invariant under invertible maps of each variable).
"""

from __future__ import annotations

import numpy as np
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import (
    CompositeTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    RandomPermutation,
)
from scipy.special import ndtri

from pidcore.batchflow import train_flows
from pidcore.reduce import check_samples


class MarginalGaussianizer:
    """Each column through its empirical CDF (linearly interpolated) and the normal quantile."""

    def fit(self, x) -> MarginalGaussianizer:
        data = check_samples(x)
        n = data.shape[0]
        self.sorted_ = np.sort(data, axis=0)
        self.levels_ = ndtri((np.arange(n) + 0.5) / n)
        return self

    def transform(self, x) -> np.ndarray:
        data = check_samples(x)
        columns = [np.interp(data[:, j], self.sorted_[:, j], self.levels_) for j in range(data.shape[1])]
        return np.stack(columns, axis=1)


class FlowGaussianizer:
    """Map samples to (approximately) standard Gaussian ones with an nflows spline MAF.

    Marginal quantile normalisation first, then ``n_layers`` rational-quadratic autoregressive
    transforms separated by fixed random permutations, trained by maximum likelihood with Adam
    on mini-batches; training stops when the held-out (``validation`` fraction) log-likelihood
    has not improved for ``patience`` epochs, and the best parameters are kept. Deterministic
    for a given ``seed``.
    """

    def __init__(self, n_layers: int = 2, hidden_features: int = 32, num_bins: int = 8,
                 max_epochs: int = 30, batch_size: int = 512, learning_rate: float = 1e-2,
                 validation: float = 0.2, patience: int = 3, seed: int = 0):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation must be in (0, 1), got {validation!r}")
        self.n_layers, self.hidden_features, self.num_bins = n_layers, hidden_features, num_bins
        self.max_epochs, self.batch_size, self.learning_rate = max_epochs, batch_size, learning_rate
        self.validation, self.patience, self.seed = validation, patience, seed

    def _build(self, features: int) -> Flow:
        layers = []
        for _ in range(self.n_layers):
            layers.append(RandomPermutation(features))
            layers.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features, self.hidden_features, num_bins=self.num_bins, tails="linear",
                tail_bound=4.0, num_blocks=1))
        return Flow(CompositeTransform(layers), StandardNormal([features]))

    def fit(self, x) -> FlowGaussianizer:
        # Small flows gain nothing from intra-op threads; on a busy machine they lose ~5x.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(x)
        finally:
            torch.set_num_threads(threads)

    def _prepare(self, x) -> torch.Tensor:
        """Fit the marginal step, build the (seeded) untrained flow; returns its float32 inputs."""
        data = check_samples(x)
        self.marginal_ = MarginalGaussianizer().fit(data)
        z = torch.as_tensor(self.marginal_.transform(data), dtype=torch.float32)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.flow_ = self._build(z.shape[1])
        return z

    def _fit(self, x) -> FlowGaussianizer:
        z = self._prepare(x)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(z), generator=generator)
        n_val = max(1, int(len(z) * self.validation))
        val, train = z[order[:n_val]], z[order[n_val:]]
        optimiser = torch.optim.Adam(self.flow_.parameters(), lr=self.learning_rate)
        best, best_state, stale = -np.inf, None, 0
        self.epochs_ = 0
        for _ in range(self.max_epochs):
            self.flow_.train()
            for batch in torch.randperm(len(train), generator=generator).split(self.batch_size):
                optimiser.zero_grad()
                loss = -self.flow_.log_prob(train[batch]).mean()
                loss.backward()
                optimiser.step()
            self.epochs_ += 1
            with torch.no_grad():
                score = float(self.flow_.log_prob(val).mean())
            if score > best + 1e-4:
                best, stale = score, 0
                best_state = {k: v.clone() for k, v in self.flow_.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            self.flow_.load_state_dict(best_state)
        self.flow_.eval()
        self.validation_log_prob_ = best
        return self

    def transform(self, x) -> np.ndarray:
        z = torch.as_tensor(self.marginal_.transform(x), dtype=torch.float32)
        with torch.no_grad():
            out = self.flow_.transform_to_noise(z).double().numpy()
        if not np.all(np.isfinite(out)):
            raise ValueError("the flow produced non-finite values")
        return out

    def fit_transform(self, x) -> np.ndarray:
        return self.fit(x).transform(x)

    def _training_options(self) -> dict:
        return {"max_epochs": self.max_epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "validation": self.validation, "patience": self.patience}


def fit_gaussianizers(samples: list, seeds: list, threads: int = 1, **options) -> list[FlowGaussianizer]:
    """One fitted ``FlowGaussianizer(seed=s, **options)`` per (x, s), flows of one shape trained together.

    Flows with the same number of samples and features are trained as one batched model
    (pidcore.batchflow.train_flows) on ``threads`` torch threads; each keeps its own early stopping and
    best weights, so every model matches ``FlowGaussianizer(seed=s, **options).fit(x)`` up to float
    rounding, whatever else is in the batch.
    """
    if len(samples) != len(seeds):
        raise ValueError(f"need one seed per sample set, got {len(samples)} sets and {len(seeds)} seeds")
    models = [FlowGaussianizer(seed=seed, **options) for seed in seeds]
    inputs = [model._prepare(x) for model, x in zip(models, samples, strict=True)]
    groups: dict[tuple, list[int]] = {}
    for index, z in enumerate(inputs):
        groups.setdefault(tuple(z.shape), []).append(index)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for members in groups.values():
            fitted = train_flows([models[i].flow_ for i in members], [inputs[i] for i in members],
                                 [models[i].seed for i in members], **models[members[0]]._training_options())
            for i, (epochs, score) in zip(members, fitted, strict=True):
                models[i].epochs_, models[i].validation_log_prob_ = epochs, score
    finally:
        torch.set_num_threads(previous)
    return models
