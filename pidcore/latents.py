"""Latents: each variable reduced (PCA) and Gaussianized, ready for the Gaussian PID (pidcore.pipeline).

``crossfit`` returns one (n, k) array of latents per variable. Gaussianization modes (``MODES``):

- "none": PCA (or centring) only;
- "copula": per-coordinate normal scores (pidcore.copula) of the raw features, then PCA;
- "flow": the copula latents, then joint flows (pidcore.jointflow: the pairs (X_k, Y) jointly Gaussian under
  one shared target map), cross-fitted;
- "auto": per variable "none" or "copula" by the held-out likelihood of its marginals, then the joint flows
  are kept only if they raise the held-out joint Gaussian log-likelihood of every layer's (X1, X2, Y) by more
  than ``FLOW_MARGIN`` nats per sample (on average over layers; plus ``RAW_MARGIN`` per coordinate that
  enters the flows in raw coordinates); with many layers a probe on
  ``PROBE_LAYERS`` of them decides first whether the flows are trained on all.

PCA and the copula are unsupervised (each sees one variable only), so they are fitted on all rows: they
cannot create dependence between variables, and every row's latents are in one coordinate system
(``CrossFitted.shared`` is True). The flows see (X_k, Y) pairs, so they are cross-fitted (each fold
transformed by flows trained on the other folds) and each fold has its own coordinates (``shared`` False).
See docs/pipeline.md.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pidcore.copula import copula_gain, empirical_log_density, normal_scores
from pidcore.reduce import PCAReducer

MODES = ("auto", "none", "copula", "flow")

#: "auto" uses the copula for a variable when its empirical marginals beat Gaussian ones on held-out rows by
#: more than this many nats per sample and coordinate.
COPULA_MARGIN = 0.0
#: "auto" keeps the joint flows when they raise the held-out joint Gaussian log-likelihood per layer by more
#: than this many nats per sample (below it, the pooled covariance of shared coordinates is worth more).
FLOW_MARGIN = 0.02
#: ... plus this many nats per sample for every coordinate per layer that enters the flows in raw coordinates
#: (centred copula variables): the copula side's held-out log-Jacobian comes from the piecewise-constant
#: empirical densities, whose held-out log-likelihood is 0.015-0.06 nats per coordinate below the true density
#: at 1,000-8,000 training rows (Gaussian, x^3, cbrt, exp, sinh marginals; docs/pipeline.md).
RAW_MARGIN = 0.05
#: "auto" with more layers than this first trains the flows on this many evenly spaced layers (a probe) and
#: trains them on every layer only if the probe's gain exceeds FLOW_MARGIN.
PROBE_LAYERS = 4


def check_mode(gaussianize) -> str:
    """The Gaussianization mode: one of ``MODES``; booleans of older callers map True -> "auto",
    False -> "none". ValueError otherwise."""
    if gaussianize is True:
        return "auto"
    if gaussianize is False:
        return "none"
    if isinstance(gaussianize, str) and gaussianize in MODES:
        return gaussianize
    raise ValueError(f"gaussianize must be one of {', '.join(MODES)} (or true/false), got {gaussianize!r}")


@dataclass(frozen=True)
class CrossFitted:
    """``latents``: one (n, k) array per variable, in the order given. ``shared``: True when all rows'
    latents of a variable are in one coordinate system (PCA and copula fitted on all rows), so one
    covariance over all n rows is valid; False when each fold has its own (cross-fitted flows), so the PID
    is computed per fold. ``modes``: the Gaussianization used for each variable ("none", "copula",
    "flow"). ``flow_gain``: the flows' held-out log-likelihood gain (nats per sample and layer) when they
    were trained ("flow" or "auto"), else None."""

    latents: list
    shared: bool
    modes: list
    flow_gain: float | None = None


class _Centre:
    """Centring only: used when a variable has no more features than the requested dims, so an
    element-wise warp of its coordinates stays element-wise."""

    def fit(self, x):
        self.mean_ = x.mean(axis=0)
        return self

    def transform(self, x):
        return x - self.mean_


def _reducer(x: np.ndarray, dims: int, name: str):
    if (x.shape[1] <= dims and x.shape[1] < len(x) and np.all(x.std(axis=0) > 0)
            and np.linalg.matrix_rank(x - x.mean(axis=0)) == x.shape[1]):
        return _Centre().fit(x)
    reducer = PCAReducer(n_components=min(dims, x.shape[1], len(x) - 1), cap_at_rank=True).fit(x, name)
    if reducer.n_components_ < min(dims, x.shape[1]):
        # low-rank data (e.g. embeddings of a few question templates) keeps only its rank
        warnings.warn(f"{name}: the data has rank {reducer.n_components_} < {min(dims, x.shape[1])} requested "
                      f"components; keeping {reducer.n_components_}", RuntimeWarning, stacklevel=4)
    return reducer


def _standardise(z: np.ndarray) -> np.ndarray:
    z = z - z.mean(axis=0)
    spread = z.std(axis=0)
    return z / np.where(spread > 0, spread, 1.0)


def _reduce(x: np.ndarray, dims: int, name: str, copula: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, k) standardised latents of one variable: (normal scores, then) PCA, fitted on all rows; and, for
    the copula of a variable that is only centred (no PCA), its standardised raw coordinates (the flows'
    starting point: monotone in the latents coordinate by coordinate), else None."""
    data = normal_scores(x) if copula else x
    reducer = _reducer(data, dims, name)
    raw = _standardise(x) if copula and isinstance(reducer, _Centre) else None
    return _standardise(reducer.transform(data)), raw


def _flow_options(flow_options: dict) -> dict:
    from pidcore.jointflow import OPTIONS

    unknown = sorted(set(flow_options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown flow option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    return dict(flow_options)


def crossfit(variables: list, fold_ids, gaussianize, flow_options: dict, timings: dict, report=None,
             groups: list | None = None, seed: int = 0) -> CrossFitted:
    """Latents (n, k) per variable (x, name, dims, seed) for the Gaussianization mode ``gaussianize``
    (see the module docstring; booleans accepted). ``groups``: tuples of variable indices (sources...,
    target) that the PID uses together (one per layer), needed by the flows; default: all variables
    as one group. ``flow_options``: options of pidcore.jointflow.fit_joint_flows. The variables' copula
    and PCA run on ``flow_options["threads"]`` Python threads (default 2). ``report(stage, fraction,
    message)`` tells how far the PCA ("pca") and flow ("flows") stages are; ``timings`` gains the seconds
    spent in "pca" (copula + PCA) and "flows"."""
    mode = check_mode(gaussianize)
    report = report or (lambda stage, fraction, message: None)
    options = _flow_options(flow_options) if mode in ("flow", "auto") else {}
    groups = [tuple(range(1, len(variables))) + (0,)] if groups is None else [tuple(g) for g in groups]
    start = time.perf_counter()

    def prepare(variable) -> tuple:
        x, name, dims, _ = variable
        copula = mode in ("copula", "flow") or (mode == "auto" and copula_gain(x, fold_ids) > COPULA_MARGIN)
        return (*_reduce(x, dims, name, copula), copula)

    threads = options.get("threads") or 2
    with ThreadPoolExecutor(max_workers=threads) as pool:  # BLAS and sorting release the GIL
        reduced = list(pool.map(prepare, variables))
    latents, starts, copula = ([r[i] for r in reduced] for i in range(3))
    timings["pca"] = timings.get("pca", 0.0) + time.perf_counter() - start
    report("pca", 1.0, f"PCA of {len(variables)} variables done")
    modes = ["copula" if c else "none" for c in copula]
    if mode in ("none", "copula"):
        return CrossFitted(latents=latents, shared=True, modes=modes)
    start = time.perf_counter()
    folds = len(np.unique(fold_ids))

    def flows_done(done: int, total: int) -> None:
        count = len(variables) * folds
        report("flows", done / total, f"normalizing flows {count * done // total}/{count} trained")

    flows_done(0, 1)
    from pidcore.jointflow import FlowFailed

    try:
        return _with_flows(mode, latents, starts, modes, groups, fold_ids, seed, options, flows_done)
    except (FlowFailed, RuntimeError) as error:  # degenerate latents (a few question templates), non-finite output
        reason = str(error).splitlines()[0][:200]
        if mode != "auto":
            raise ValueError(f"the joint flows could not be fitted ({reason}); use gaussianize='auto' or "
                             "'copula'") from error
        warnings.warn(f"joint flows could not be fitted ({reason}); kept the {', '.join(sorted(set(modes)))} "
                      "latents (gaussianize='auto')", RuntimeWarning, stacklevel=3)
        return CrossFitted(latents=latents, shared=True, modes=modes)
    finally:
        timings["flows"] = timings.get("flows", 0.0) + time.perf_counter() - start


def _copula_log_jacobian(raw: np.ndarray, scores: np.ndarray, fold_ids: np.ndarray) -> np.ndarray:
    """(n,) per-row log|d scores / d raw| (nats) of the copula map of one variable, held out: each fold's
    marginal densities are fitted on the other folds (copula.empirical_log_density)."""
    out = np.empty(len(raw))
    for fold in np.unique(fold_ids):
        train, test = fold_ids != fold, fold_ids == fold
        log_density = empirical_log_density(raw[train], raw[test]).sum(axis=1)
        out[test] = log_density - (-0.5 * (np.log(2 * np.pi) + scores[test] ** 2)).sum(axis=1)
    return out


def _with_flows(mode, latents, starts, modes, groups, fold_ids, seed, options, flows_done) -> CrossFitted:
    """crossfit's flow stage: the probe (auto, many layers), the flows on all layers, and the choice.

    A copula variable that is only centred and looks mixed (``jointflow.ica_unmixing``) enters the flows as
    its standardised raw coordinates (the flow starts there: unmixing, then normal scores), not as its normal
    scores: a spline cannot map the normal
    scores back exactly, and its error, once mixed by the unmixing, is not undone later (docs/pipeline.md).
    The flows then compete with the copula latents plus the copula map's held-out log-Jacobian."""
    from pidcore.jointflow import fit_joint_flows, ica_unmixing

    if options.get("n_layers", 3) < 3:  # no room for the start (spline, unmixing, spline): copula inputs
        starts = [None] * len(latents)
    # only a variable that looks mixed takes the raw route; an element-wise warp starts at its copula latents
    starts = [None if raw is None or ica_unmixing(raw) is None else raw for raw in starts]
    inputs = [latents[v] if starts[v] is None else starts[v] for v in range(len(latents))]
    jacobians = [None if starts[v] is None else _copula_log_jacobian(starts[v], latents[v], fold_ids)
                 for v in range(len(latents))]

    raw = [0 if starts[v] is None else latents[v].shape[1] for v in range(len(latents))]
    margin = FLOW_MARGIN + RAW_MARGIN * float(np.mean([sum(raw[v] for v in g) for g in groups]))

    def fit_on(used, fit_groups, **extra):
        return fit_joint_flows([inputs[v] for v in used], fit_groups, fold_ids, seed=seed,
                               starts=[starts[v] for v in used],
                               baseline=([latents[v] for v in used], [jacobians[v] for v in used]),
                               **extra, **options)

    if mode == "auto" and len(groups) > PROBE_LAYERS:
        # a probe on a few evenly spaced layers first: the flows over all layers only when they pay off there
        probe = [groups[i] for i in np.linspace(0, len(groups) - 1, PROBE_LAYERS).round().astype(int)]
        used = sorted({v for g in probe for v in g})
        index = {v: i for i, v in enumerate(used)}
        trial = fit_on(used, [tuple(index[v] for v in g) for g in probe])
        if trial.gain <= margin:
            flows_done(1, 1)
            return CrossFitted(latents=latents, shared=True, modes=modes, flow_gain=trial.gain)
    fit = fit_on(range(len(latents)), groups, progress=flows_done)
    if mode == "flow" or fit.gain > margin:
        return CrossFitted(latents=fit.latents, shared=False, modes=["flow"] * len(latents), flow_gain=fit.gain)
    return CrossFitted(latents=latents, shared=True, modes=modes, flow_gain=fit.gain)
