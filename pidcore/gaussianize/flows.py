"""Gaussianization: marginal quantile normalisation followed by an nflows spline MAF.

Both steps are invertible, so the mutual information between Gaussianized variables equals the
one between the originals (bits are invariant under invertible maps of each variable).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

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

from pidcore.gaussianize.batchflow import split_train_validation, to_noise, train_flows, validation_size
from pidcore.reduce.pca import check_samples


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
    for a given ``seed``. ``batch_size=None``: an eighth of the training part, within [128, 512]
    (several Adam steps per epoch even for small samples, few steps for large ones).
    """

    def __init__(self, n_layers: int = 2, hidden_features: int = 32, num_bins: int = 8,
                 max_epochs: int = 30, batch_size: int | None = None, learning_rate: float = 1e-2,
                 validation: float = 0.2, patience: int = 2, seed: int = 0):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation must be in (0, 1), got {validation!r}")
        self.n_layers, self.hidden_features, self.num_bins = n_layers, hidden_features, num_bins
        self.max_epochs, self.batch_size, self.learning_rate = max_epochs, batch_size, learning_rate
        self.validation, self.patience, self.seed = validation, patience, seed

    def _batch(self, n: int) -> int:
        """Mini-batch size for ``n`` samples (before the validation split)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return min(512, max(128, (n - validation_size(n, self.validation)) // 8))

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
        train, val = split_train_validation(z, generator, self.validation)
        optimiser = torch.optim.Adam(self.flow_.parameters(), lr=self.learning_rate, foreach=True)
        best, best_state, stale = -np.inf, None, 0
        self.epochs_ = 0
        for _ in range(self.max_epochs):
            self.flow_.train()
            for batch in torch.randperm(len(train), generator=generator).split(self._batch(len(z))):
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
            return _finite(self.flow_.transform_to_noise(z).double().numpy())

    def fit_transform(self, x) -> np.ndarray:
        return self.fit(x).transform(x)

    def _training_options(self, n: int) -> dict:
        return {"max_epochs": self.max_epochs, "batch_size": self._batch(n),
                "learning_rate": self.learning_rate, "validation": self.validation, "patience": self.patience}


def _finite(out: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(out)):
        raise ValueError("the flow produced non-finite values")
    return out


def _batches(inputs: list, chunk, threads: int) -> list:
    """Indices of ``inputs`` grouped by tensor shape, each group cut into near-equal parts of at most
    ``chunk(n samples)`` members, their count a multiple of ``threads`` (so threads get equal shares)."""
    groups: dict[tuple, list[int]] = {}
    for index, z in enumerate(inputs):
        groups.setdefault(tuple(z.shape), []).append(index)
    parts = []
    for members in groups.values():
        count = -(-len(members) // chunk(len(inputs[members[0]])))
        count = min(len(members), -(-count // threads) * threads)
        parts += [part.tolist() for part in np.array_split(np.array(members), count)]
    return parts


def fit_gaussianizers(samples: list, seeds: list, threads: int | None = None, chunk: int | None = None,
                      progress=None, **options) -> list[FlowGaussianizer]:
    """One fitted ``FlowGaussianizer(seed=s, **options)`` per (x, s), flows of one shape trained together.

    Flows with the same number of samples and features are trained as batched models of up to
    ``chunk`` flows each (pidcore.gaussianize.batchflow.train_flows; default: about 4,096 samples per step
    over the chunk, small enough to stay in the CPU caches, fastest here),
    the chunks spread over ``threads`` Python threads (default: 2, or 1 on a one-core machine) running
    one torch thread each (no intra-op barriers, so a busy machine slows them gently). Each flow keeps
    its own early stopping and best weights, so every model equals
    ``FlowGaussianizer(seed=s, **options).fit(x)`` up to float rounding, whatever else is trained.
    ``progress(done, total)`` (flow counts) is called as batches finish.
    """
    if len(samples) != len(seeds):
        raise ValueError(f"need one seed per sample set, got {len(samples)} sets and {len(seeds)} seeds")
    if chunk is not None and (int(chunk) != chunk or chunk < 1):
        raise ValueError(f"chunk must be a positive integer or None, got {chunk!r}")
    models = [FlowGaussianizer(seed=seed, **options) for seed in seeds]
    threads = default_threads(threads)
    inputs = [model._prepare(x) for model, x in zip(models, samples, strict=True)]
    size = (lambda n: chunk) if chunk is not None else (lambda n: max(1, 4096 // models[0]._batch(n)))
    batches = _batches(inputs, size, threads)

    finished, lock = [0], threading.Lock()

    def train(members: list[int]) -> None:
        training = models[members[0]]._training_options(len(inputs[members[0]]))
        fitted = train_flows([models[i].flow_ for i in members], [inputs[i] for i in members],
                             [models[i].seed for i in members], **training)
        for i, (epochs, score) in zip(members, fitted, strict=True):
            models[i].epochs_, models[i].validation_log_prob_ = epochs, score
        if progress is not None:
            with lock:
                finished[0] += len(members)
                progress(finished[0], len(models))

    _run(train, batches, threads)
    return models


def transform_many(models: list, samples: list, threads: int | None = None) -> list[np.ndarray]:
    """``[m.transform(x) for m, x in zip(models, samples)]`` (the same values), computed as batched
    forward passes (pidcore.gaussianize.batchflow.to_noise) of models with inputs of one shape, on ``threads``."""
    if len(models) != len(samples):
        raise ValueError(f"need one sample set per model, got {len(models)} models and {len(samples)} sets")
    inputs = [torch.as_tensor(m.marginal_.transform(x), dtype=torch.float32) for m, x in zip(models, samples,
                                                                                               strict=True)]
    threads = default_threads(threads)
    outputs: list = [None] * len(models)

    def forward(members: list[int]) -> None:
        noise = to_noise([models[i].flow_ for i in members], torch.stack([inputs[i] for i in members]))
        for i, out in zip(members, noise, strict=True):
            outputs[i] = _finite(out.double().numpy())

    _run(forward, _batches(inputs, lambda n: 32, threads), threads)
    return outputs


def default_threads(threads: int | None = None) -> int:
    """``threads`` checked, or the default: 2 (1 on a one-core machine)."""
    threads = min(2, os.cpu_count() or 1) if threads is None else threads
    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _run(work, batches: list, threads: int) -> None:
    """work(batch) for every batch on ``threads`` Python threads, one torch thread each."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads == 1:
            for batch in batches:
                work(batch)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(work, batches))
    finally:
        torch.set_num_threads(previous)
