"""Cross-fitted latents: each variable reduced (PCA) and Gaussianized by models fitted on the other fold(s).

The stage between raw samples and the Gaussian PID (pidcore.pipeline): ``crossfit`` returns, per
variable, an (n, k) array of latents in which every sample's value comes from models that never saw it.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pidcore.gaussianize import FlowGaussianizer, default_threads, fit_gaussianizers, transform_many
from pidcore.reduce import PCAReducer


@dataclass(frozen=True)
class CrossFitted:
    """``latents``: one (n, k) array per variable, in the order given. ``shared``: True when every fold's
    latents of a variable are in one coordinate system, so one covariance over all n rows is valid;
    False when each fold has its own (per-fold PCA bases or flows), so the PID is computed per fold.
    ``modes``: the Gaussianization used for each variable ("none", "flow", ...)."""

    latents: list
    shared: bool
    modes: list


class _Centre:
    """Centring only: used when a variable has no more features than the requested dims, so an
    element-wise warp of its coordinates stays element-wise for the Gaussianizer."""

    def fit(self, x):
        self.mean_ = x.mean(axis=0)
        return self

    def transform(self, x):
        return x - self.mean_


def _reducer(x: np.ndarray, dims: int, name: str):
    if (x.shape[1] <= dims and x.shape[1] < len(x) and np.all(x.std(axis=0) > 0)
            and np.linalg.matrix_rank(x - x.mean(axis=0)) == x.shape[1]):
        return _Centre().fit(x)
    return PCAReducer(n_components=min(dims, x.shape[1], len(x) - 1), cap_at_rank=True).fit(x, name)


def _fold_reducers(x: np.ndarray, dims: int, name: str, fold_ids) -> list:
    """One reducer per fold (fitted on the other folds), all keeping the same number of components.

    Low-rank data (e.g. embeddings of a few question templates) keeps only as many components as
    the lowest-rank training split supports, with a warning, instead of failing.
    """
    reducers = [_reducer(x[fold_ids != fold], dims, name) for fold in np.unique(fold_ids)]
    sizes = [r.n_components_ for r in reducers if isinstance(r, PCAReducer)]
    if sizes and min(sizes) < min(dims, x.shape[1]):
        keep = min(sizes)
        warnings.warn(f"{name}: the data has rank {keep} < {min(dims, x.shape[1])} requested components; "
                      f"keeping {keep}", RuntimeWarning, stacklevel=3)
        reducers = [r.truncate(keep) if isinstance(r, PCAReducer) else r for r in reducers]
    return reducers


def _reduce(variable: tuple, fold_ids) -> list:
    """Per fold of one variable (x, name, dims, seed): (held-out rows, reduced training part, reduced
    held-out part, flow seed), the reducer fitted on the other folds."""
    x, name, dims, seed = variable
    parts = []
    for fold, reducer in zip(np.unique(fold_ids), _fold_reducers(x, dims, name, fold_ids), strict=True):
        train, test = fold_ids != fold, fold_ids == fold
        parts.append((test, reducer.transform(x[train]), reducer.transform(x[test]), seed + 1000 * int(fold)))
    return parts


def crossfit(variables: list, fold_ids, gaussianize: bool, flow_options: dict, timings: dict,
             report=None) -> CrossFitted:
    """Cross-fitted latents (n, k) per variable (x, name, dims, seed): PCA (+ flow) fitted on the other
    folds, applied to each fold. The variables' PCAs run on ``flow_options["threads"]`` Python threads
    (default 2); all flows are fitted together (fit_gaussianizers: flows of one shape train as batched
    models) unless ``flow_options["batched"]`` is False (one after another, the reference path).
    ``report(stage, fraction, message)`` tells how far the PCA ("pca") and flow ("flows") stages are."""
    report = report or (lambda stage, fraction, message: None)
    options = dict(flow_options)
    batched, threads, chunk = options.pop("batched", True), options.pop("threads", None), options.pop("chunk", None)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=default_threads(threads)) as pool:  # BLAS calls release the GIL
        reduced = list(pool.map(lambda variable: _reduce(variable, fold_ids), variables))
    # (variable index, held-out rows, reduced training part, reduced held-out part, flow seed)
    pieces = [(index, *piece) for index, parts in enumerate(reduced) for piece in parts]
    timings["pca"] += time.perf_counter() - start
    report("pca", 1.0, f"PCA of {len(variables)} variables done")
    start = time.perf_counter()
    if not gaussianize:
        latents = [held_out / reduced.std(axis=0) for _, _, reduced, held_out, _ in pieces]
    else:
        samples, seeds = [p[2] for p in pieces], [p[4] for p in pieces]

        def flows_done(done: int, total: int) -> None:
            report("flows", done / total, f"normalizing flows {done}/{total} trained")

        flows_done(0, len(samples))
        if batched:
            models = fit_gaussianizers(samples, seeds, threads=threads, chunk=chunk, progress=flows_done, **options)
        else:
            models = []
            for x, s in zip(samples, seeds, strict=True):
                models.append(FlowGaussianizer(seed=s, **options).fit(x))
                flows_done(len(models), len(samples))
        latents = transform_many(models, [p[3] for p in pieces], threads=threads)
    timings["flows"] += time.perf_counter() - start
    out = [None] * len(variables)
    for (index, test, *_), latent in zip(pieces, latents, strict=True):
        if out[index] is None:
            out[index] = np.empty((len(fold_ids), latent.shape[1]))
        out[index][test] = latent
    mode = "flow" if gaussianize else "none"
    return CrossFitted(latents=out, shared=False, modes=[mode] * len(variables))
