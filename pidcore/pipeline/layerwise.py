"""PID Flow: PCA -> Gaussianization -> closed-form Gaussian PID (bits), with cross-fitting.

The latents come from pidcore.gaussianize.latents.crossfit (models fitted on the other fold(s)). When every fold's
latents share one coordinate system, one covariance over all n rows gives the PID; otherwise a PID is
computed per fold and averaged with fold-size weights. Estimates are bias-corrected by default and come
with bootstrap intervals (pidcore.estimators.estimate). See docs/pipeline.md and docs/estimators.md.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from pidcore.estimators._covariance import check_positive_definite
from pidcore.estimators.estimate import (
    ESTIMATORS,
    FIELDS,
    bootstrap_rows,
    corrected_pid,
    interval,
    plugin_bias,
)
from pidcore.estimators.pid import PID, gaussian_pid, solve_union
from pidcore.gaussianize.latents import (
    PROBE_LAYERS,
    FlowStage,
    PipelineWarning,
    _reduce,
    check_mode,
    crossfit,
)
from pidcore.gaussianize.plan import GaussianizationPlan, fixed_plan, marginal_decision, probe_indices
from pidcore.pipeline.validation import check_estimable, scale_free
from pidcore.reduce.deattenuate import OVERLAP_FLOOR, deattenuate, used_overlaps
from pidcore.reduce.pca import check_samples

_LN2 = np.log(2.0)
PARTS = ("redundancy", "unique1", "unique2", "synergy")


@dataclass(frozen=True)
class PIDFlowResult:
    """One layer's estimate, all in bits.

    ``pid``: the reported PID — bias-corrected by default (``estimator="corrected"``), the plug-in with
    ``estimator="plugin"``; ``plugin``: the uncorrected plug-in PID; ``bias``: plugin - corrected per field
    (the estimated upward bias that was removed; zeros for the plug-in estimator); ``ci``: field -> (lo, hi)
    95% interval (empty without bootstrap; see pidcore.estimators.estimate); ``pointwise`` (n, 4) [redundancy, unique1,
    unique2, synergy] per sample, column means equal to ``pid``; ``dims`` used, ``n`` samples;
    ``samples_per_covariance``: rows behind each covariance (n when the latents share coordinates, a fold
    otherwise); ``draws``: (bootstrap, 5) plug-in PIDs of the resampled rows (paired across runs and layers
    of one analysis: same rows), or None."""

    pid: PID
    ci: dict
    pointwise: np.ndarray
    dims: tuple
    n: int
    latents: np.ndarray = field(repr=False, default=None)
    plugin: PID | None = None
    bias: dict = field(default_factory=dict)
    estimator: str = "corrected"
    samples_per_covariance: int = 0
    draws: np.ndarray | None = field(repr=False, default=None)
    gaussianization: str = ""


@dataclass(frozen=True)
class LayerwiseResult:
    """One PIDFlowResult per layer plus (layers,) arrays of each part in bits; ``timings``:
    seconds spent in PCA, flows and PID (with pointwise terms and bootstrap); ``plan``: the
    GaussianizationPlan used (every choice, with its statistic and margin)."""

    layers: list
    timings: dict = field(default_factory=dict)
    plan: GaussianizationPlan | None = None

    def part(self, name: str) -> np.ndarray:
        return np.array([getattr(r.pid, name) for r in self.layers])

    @property
    def redundancy(self):
        return self.part("redundancy")

    @property
    def unique1(self):
        return self.part("unique1")

    @property
    def unique2(self):
        return self.part("unique2")

    @property
    def synergy(self):
        return self.part("synergy")

    @property
    def total(self):
        return self.part("total")


def _fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    ids = np.arange(n) % folds
    return np.random.default_rng(seed).permutation(ids)


def bootstrap_question_rows(n: int, rounds: int, seed: int, folds: int = 2) -> list[np.ndarray]:
    """The resampled row indices behind ``layerwise(..., bootstrap=rounds, seed=seed, folds=folds)``'s draws."""
    return list(bootstrap_rows(_fold_ids(n, folds, seed), rounds, seed))


def _validate(x1, x2, y):
    arrays = [check_samples(v, name) for v, name in ((x1, "x1"), (x2, "x2"), (y, "y"))]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"mismatched lengths: x1 has {len(arrays[0])}, x2 {len(arrays[1])}, y {len(arrays[2])} samples")
    for a, name in zip(arrays, ("x1", "x2", "y"), strict=True):
        if np.all(np.ptp(a, axis=0) == 0):
            raise ValueError(f"{name}: every column is constant")
    return arrays


def _check_dims(dims):
    if len(dims) != 3 or any(int(d) != d or d < 1 for d in dims):
        raise ValueError(f"dims must be three positive integers, got {dims!r}")
    return tuple(int(d) for d in dims)


def _log_ratio(z: np.ndarray, cov: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample log p(a, b) - log p(a) - log p(b) (nats) under a centred Gaussian with ``cov``."""

    def quad(idx):
        block = cov[np.ix_(idx, idx)]
        sol = np.linalg.solve(block, z[:, idx].T).T
        return np.einsum("ij,ij->i", z[:, idx], sol), np.linalg.slogdet(block)[1]

    qa, la = quad(a)
    qb, lb = quad(b)
    qab, lab = quad(np.concatenate([a, b]))
    return 0.5 * (la + lb - lab) + 0.5 * (qa + qb - qab)


def _pointwise(z: np.ndarray, dims, measure: str, pid: PID, correction: Correction | None = None) -> np.ndarray:
    """(n, 4) pointwise [R, U1, U2, S] bits whose column means equal ``pid`` (see docs/pipeline.md); with a
    ``correction``, of the latents scaled by 1 / sqrt(overlap) under the de-attenuated covariance."""
    d1, d2, _ = dims
    z = z - z.mean(axis=0)
    cov = z.T @ z / len(z)
    if correction is not None:
        corrected, share = deattenuate(cov, correction.overlaps)
        z = z / np.sqrt(used_overlaps(correction.overlaps, share))
        cov = corrected
    i1_idx, i2_idx = np.arange(d1), np.arange(d1, d1 + d2)
    y_idx, x_idx = np.arange(d1 + d2, z.shape[1]), np.arange(d1 + d2)
    i1 = _log_ratio(z, cov, i1_idx, y_idx) / _LN2
    i2 = _log_ratio(z, cov, i2_idx, y_idx) / _LN2
    i12 = _log_ratio(z, cov, x_idx, y_idx) / _LN2
    if measure == "mmi":
        union = i1 if i1.mean() >= i2.mean() else i2
    else:
        solution = solve_union(cov, dims)
        q = solution.cov_q
        gain = q[np.ix_(y_idx, x_idx)] @ np.linalg.pinv(q[np.ix_(x_idx, x_idx)])
        resid = z[:, y_idx] - z[:, x_idx] @ gain.T
        post = solution.posterior_cov
        log_q = -0.5 * np.einsum("ij,ij->i", resid, np.linalg.solve(post, resid.T).T) - 0.5 * np.linalg.slogdet(post)[1]
        prior = cov[np.ix_(y_idx, y_idx)]
        log_p = -0.5 * np.einsum("ij,ij->i", z[:, y_idx], np.linalg.solve(prior, z[:, y_idx].T).T) - 0.5 * np.linalg.slogdet(prior)[1]
        union = (log_q - log_p) / _LN2
        union = union - union.mean() + solution.union_info  # analytic centring
    terms = np.stack([i1 + i2 - union, union - i2, union - i1, i12 - union], axis=1)
    target = np.array([getattr(pid, p) for p in PARTS])
    return terms - terms.mean(axis=0) + target


def _average(pids: list[PID], weights: np.ndarray) -> PID:
    fields = {k: float(np.dot(weights, [p.as_dict()[k] for p in pids])) for k in pids[0].as_dict()}
    return PID(**fields)


def _groups(fold_ids: np.ndarray, shared: bool) -> list[np.ndarray]:
    """Boolean row masks, one per covariance: all rows when the latents share coordinates, else per fold."""
    if shared:
        return [np.ones(len(fold_ids), dtype=bool)]
    return [fold_ids == f for f in np.unique(fold_ids)]


@dataclass(frozen=True)
class Correction:
    """The sample PCA's attenuation to undo (pidcore.reduce.deattenuate): ``overlaps`` (d,) per latent
    coordinate (1 where nothing is undone)."""

    overlaps: np.ndarray

    def __call__(self, cov: np.ndarray) -> np.ndarray:
        return deattenuate(cov, self.overlaps)[0]


def _plugin(z: np.ndarray, groups: list, dims, measure: str, correction: Correction | None = None) -> PID:
    """Plug-in Gaussian PID (bits): size-weighted mean over the row groups' covariances (de-attenuated by
    ``correction`` when given)."""
    weights = np.array([g.sum() for g in groups], dtype=float)
    fix = correction or (lambda cov: cov)
    pids = [gaussian_pid(fix(np.cov(z[g], rowvar=False)), dims, measure) for g in groups]
    return _average(pids, weights / weights.sum())


def _draws(z: np.ndarray, fold_ids: np.ndarray, shared: bool, dims, measure: str, rounds: int,
           seed: int, tick: Callable[[int], None] | None = None, correction: Correction | None = None) -> np.ndarray:
    """(rounds, 5) plug-in PIDs (bits, FIELDS order) of rows resampled within folds (pidcore.estimators.estimate);
    ``tick(round)`` before each round (the caller's progress callback, which may raise to stop)."""
    out = np.empty((rounds, len(FIELDS)))
    for index, rows in enumerate(bootstrap_rows(fold_ids, rounds, seed)):
        if tick is not None:
            tick(index)
        sample, sample_folds = z[rows], fold_ids[rows]
        try:
            pid = _plugin(sample, _groups(sample_folds, shared), dims, measure, correction)
        except ValueError:  # a resample repeats rows: it can be singular where the whole sample is not
            pid = _plugin(_jitter(sample, seed + 15485863 + index), _groups(sample_folds, shared), dims, measure,
                          correction)
        out[index] = [getattr(pid, k) for k in FIELDS]
    return out


def intervals(estimate: PID, draws: np.ndarray, estimator: str, level: float = 0.95) -> dict:
    """field -> (lo, hi) bits from bootstrap ``draws`` (rounds, 5): basic intervals about a corrected
    estimate, plain percentiles for the plug-in (pidcore.estimators.estimate)."""
    return {name: interval(getattr(estimate, name), draws[:, column], estimator, level)
            for column, name in enumerate(FIELDS)}


#: Relative variance of the noise added to degenerate latents (caps MI near 0.5*log2(1/1e-6) = 10 bits
#: per deterministic direction).
DEGENERATE_JITTER = 1e-6


def _nondegenerate(z: np.ndarray, fold_ids: np.ndarray, seed: int, label: str,
                   layer: int | None = None) -> np.ndarray:
    """``z`` itself, or ``z`` plus tiny seeded noise when some fold's latents are (almost) exact linear
    functions of one another (e.g. a knockout that hides the image from the answer makes the target a
    function of a few question templates); Gaussian information would be infinite there."""
    degenerate = False
    for fold in np.unique(fold_ids):
        cov = np.cov(z[fold_ids == fold], rowvar=False, bias=True)
        try:
            check_positive_definite(cov)
        except ValueError:
            degenerate = True
            break
    if not degenerate:
        return z
    warnings.warn(PipelineWarning(f"{label}: the latents are (almost) deterministic functions of one another; added "
                                  f"noise of {DEGENERATE_JITTER:g} relative variance, so information is capped near "
                                  f"{0.5 * np.log2(1 / DEGENERATE_JITTER):.0f} bits per such direction",
                                  "degenerate", layer), stacklevel=4)
    return _jitter(z, seed + 104729)


def _jitter(z: np.ndarray, seed: int) -> np.ndarray:
    """``z`` plus seeded noise of DEGENERATE_JITTER relative variance per column."""
    rng = np.random.default_rng(seed)
    return z + np.sqrt(DEGENERATE_JITTER) * z.std(axis=0) * rng.standard_normal(z.shape)


def _result(z: np.ndarray, fold_ids: np.ndarray, dims, measure: str, bootstrap: int, seed: int,
            label: str = "latents", shared: bool = False, estimator: str = "corrected",
            gaussianization: str = "", tick: Callable[[int], None] | None = None,
            layer: int | None = None, correction: Correction | None = None) -> PIDFlowResult:
    if not np.all(np.isfinite(z)):
        raise ValueError("Gaussianization produced non-finite latents")
    z = _nondegenerate(z, fold_ids, seed, label, layer)
    groups = _groups(fold_ids, shared)
    weights = np.array([g.sum() for g in groups], dtype=float)
    weights /= weights.sum()
    fix = correction or (lambda cov: cov)
    estimates = [corrected_pid(fix(np.cov(z[g], rowvar=False)), dims, int(g.sum()), measure, seed=seed + i)
                 for i, g in enumerate(groups)]
    plugin = _average([e.plugin for e in estimates], weights)
    chosen = [e.corrected if estimator == "corrected" else e.plugin for e in estimates]
    pid = _average(chosen, weights)
    pointwise = np.empty((len(z), 4))
    for rows, group_pid in zip(groups, chosen, strict=True):
        pointwise[rows] = _pointwise(z[rows], dims, measure, group_pid, correction)
    draws = _draws(z, fold_ids, shared, dims, measure, bootstrap, seed, tick, correction) if bootstrap > 0 else None
    ci = intervals(pid, draws, estimator) if draws is not None else {}
    bias = {k: plugin.as_dict()[k] - pid.as_dict()[k] for k in FIELDS}
    return PIDFlowResult(pid=pid, ci=ci, pointwise=pointwise, dims=dims, n=len(z), latents=z, plugin=plugin,
                         bias=bias, estimator=estimator, samples_per_covariance=int(min(g.sum() for g in groups)),
                         draws=draws, gaussianization=gaussianization)


#: Bootstrap rounds of the intervals by default (their 2.5/97.5% quantiles vary by ~0.1 sd between seeds).
DEFAULT_BOOTSTRAP = 200


def pid_flow(x1, x2, y, *, dims=(16, 16, 8), gaussianize: str | bool = "auto", measure: str = "broja",
             estimator: str = "corrected", bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, folds: int = 2,
             flow_options: dict | None = None) -> PIDFlowResult:
    """PID (bits) of I(X1, X2; Y) from samples (n, d1), (n, d2), (n, dy) via cross-fitted PID Flow."""
    return layerwise([x1], [x2], y, dims=dims, gaussianize=gaussianize, measure=measure, estimator=estimator,
                     bootstrap=bootstrap, seed=seed, folds=folds, flow_options=flow_options).layers[0]


def layerwise(x1_layers, x2_layers, y, *, dims=(16, 16, 8), gaussianize: str | bool = "auto",
              measure: str = "broja",
              estimator: str = "corrected", bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, folds: int = 2,
              flow_options: dict | None = None,
              progress: Callable[[float, str], None] | None = None,
              plan: GaussianizationPlan | dict | None = None, layer_ids: list | None = None,
              reduce_first: bool = False) -> LayerwiseResult:
    """PID Flow per layer; the target's PCA and flow are fitted once and shared by all layers.

    ``estimator="corrected"`` (default) reports bias-corrected parts, ``"plugin"`` the uncorrected plug-in
    (pidcore.estimators.estimate); ``bootstrap`` rounds of resampled rows give 95% intervals (0: none).

    Every layer's PCA runs first, then all flows are trained together (see pidcore.gaussianize.latents.crossfit), then the
    per-layer Gaussian PIDs; ``progress(fraction, message)`` reports all three stages (fraction 0..1, never
    decreasing: PCA, then each finished batch of flows, then each layer's PID, and at least every TICK_S
    seconds inside bootstrap loops); an exception it raises stops the work (how a service cancels a
    running analysis: pidcore knows nothing of it). ``gaussianize``: "auto"
    (default), "none", "copula" or "flow" (True means "auto", False "none"); see pidcore.gaussianize.latents.

    ``plan``: a GaussianizationPlan (or its dict) from ``gaussianization_plan`` of all the analysis's layers;
    without one it is made here from the layers given. ``layer_ids``: the layers' indices in the whole
    analysis (default 0, 1, ...), named in warnings. Each layer's flows are fitted on that layer alone with
    the same seed, so a subset of layers analysed with the whole analysis's plan gives exactly the numbers of
    the whole. ``reduce_first``: PCA of the raw features first, then the marginal Gaussianization of the
    kept components (the seed-faithful recipe's order; the default Gaussianizes each feature, then PCA)."""
    dims = _check_dims(dims)
    gaussianize = check_mode(gaussianize)
    if isinstance(plan, dict):
        plan = GaussianizationPlan.from_dict(plan)
    layer_ids = list(range(len(x1_layers))) if layer_ids is None else [int(i) for i in layer_ids]
    if len(layer_ids) != len(x1_layers):
        raise ValueError(f"layer_ids has {len(layer_ids)} entries for {len(x1_layers)} layers")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if len(x1_layers) != len(x2_layers) or len(x1_layers) == 0:
        raise ValueError(f"x1_layers and x2_layers need the same non-zero number of layers, "
                         f"got {len(x1_layers)} and {len(x2_layers)}")
    options = dict(flow_options or {})
    report = progress or (lambda fraction, message: None)
    checked, fold_ids = _prepared(x1_layers, x2_layers, y, dims, folds, bootstrap, seed)
    # Single-threaded BLAS: its matrices are small here, and its spinning threads lose up to ~8x on a busy
    # machine; the PCAs and flows use the cores through Python threads instead.
    with threadpool_limits(limits=1, user_api="blas"):
        if plan is None and gaussianize == "auto":
            plan = _marginal_plan(checked)
        elif plan is None:
            plan = fixed_plan(gaussianize)
        return _layerwise(checked, fold_ids, dims, plan.mode, measure, estimator, bootstrap, seed, options,
                          report, plan, layer_ids, reduce_first)


def _prepared(x1_layers, x2_layers, y, dims, folds, bootstrap, seed) -> tuple[list, np.ndarray]:
    """Validated, scale-free (x1, x2, y) per layer and the fold ids; ValueError if not estimable."""
    checked = [_validate(a, b, y) for a, b in zip(x1_layers, x2_layers, strict=True)]
    n = len(checked[0][2])
    features = tuple(min(triple[k].shape[1] for triple in checked) for k in range(3))
    check_estimable(n, features, dims, folds=folds, bootstrap=bootstrap, seed=seed)
    target = scale_free(checked[0][2])  # PID is scale invariant; float64 sums of 1e160**2 are not
    return [(scale_free(a), scale_free(b), target) for a, b, _ in checked], _fold_ids(n, folds, seed)


def _marginal_plan(checked: list) -> GaussianizationPlan:
    """auto's per-variable decisions over every layer given; the flows still undecided (None)."""
    decisions = (marginal_decision("x1", [a for a, _, _ in checked]),
                 marginal_decision("x2", [b for _, b, _ in checked]),
                 marginal_decision("y", [checked[0][2]]))
    return GaussianizationPlan(mode="auto", marginal={d.variable: d.choice for d in decisions}, flows=None,
                               decisions=decisions)


def gaussianization_plan(x1_layers, x2_layers, y, *, dims=(16, 16, 8), gaussianize: str | bool = "auto",
                         bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, folds: int = 2,
                         flow_options: dict | None = None, reduce_first: bool = False) -> GaussianizationPlan:
    """The GaussianizationPlan ``layerwise`` makes for these layers, made once per analysis (e.g. before
    layer batches fan out to workers) and passed to ``layerwise(plan=...)`` of any subset of the layers and
    of a knockout run of the same questions. Only the probe layers (pidcore.gaussianize.plan.probe_indices) are reduced."""
    dims, mode = _check_dims(dims), check_mode(gaussianize)
    if mode != "auto":
        return fixed_plan(mode)
    checked, fold_ids = _prepared(x1_layers, x2_layers, y, dims, folds, bootstrap, seed)
    options = dict(flow_options or {})
    with threadpool_limits(limits=1, user_api="blas"):
        plan = _marginal_plan(checked)
        copula = {role: plan.marginal[role] == "copula" for role in ("x1", "x2", "y")}
        probe = probe_indices(len(checked), PROBE_LAYERS)
        reduced = [_reduce(checked[0][2], dims[2], "y", copula["y"], None, reduce_first)]
        for layer in probe:
            a, b, _ = checked[layer]
            reduced += [_reduce(a, dims[0], f"x1 (layer {layer})", copula["x1"], layer, reduce_first),
                        _reduce(b, dims[1], f"x2 (layer {layer})", copula["x2"], layer, reduce_first)]
        groups = [(1 + 2 * k, 2 + 2 * k, 0) for k in range(len(probe))]
        decision = FlowStage([r[0] for r in reduced], [r[1] for r in reduced], fold_ids, seed,
                             options).decide(groups, "auto")
    return GaussianizationPlan(mode="auto", marginal=plan.marginal, flows=decision.choice == "flow",
                               decisions=(*plan.decisions, decision))


#: The progress callback is called at least this often (seconds) inside bootstrap loops.
TICK_S = 0.2

#: Warn when the expected upward bias of the plug-in total I(X1, X2; Y) reaches this many bits.
SMALL_SAMPLE_BIAS_BITS = 0.25
#: Largest residual bias of a corrected part seen on the known systems of benchmarks/bench_estimates.py,
#: as a fraction of the plug-in total's bias (see docs/estimators.md).
RESIDUAL_BIAS_FRACTION = 0.15


def _warn_small_sample(rows: int, d1: int, d2: int, dy: int, estimator: str) -> None:
    """Warn when ``rows`` samples per covariance are few for the latent dimensions: the plug-in total is then
    biased upward by pidcore.estimators.estimate.plugin_bias (exact Wishart expectation) bits or more."""
    bias = plugin_bias((d1, d2, dy), rows)
    if bias < SMALL_SAMPLE_BIAS_BITS:
        return
    if estimator == "corrected":
        remains = (f"the corrected estimates remove it (the total exactly for Gaussian latents; each part to "
                   f"within about {RESIDUAL_BIAS_FRACTION * bias:.2f} bits on known systems), but intervals are wide")
    else:
        remains = "the plug-in estimator keeps all of it (use estimator='corrected')"
    warnings.warn(PipelineWarning(f"small sample: {rows} samples per covariance for {d1}+{d2}+{dy} latent dimensions; "
                                  f"the plug-in total is {bias:.2f} bits too high on average; {remains} (use more "
                                  "questions or smaller dims)", "small-sample"), stacklevel=4)


#: Sources with at least WIDE_ASPECT features per question have their sample principal components de-attenuated
#: (pidcore.reduce.deattenuate; the regime benchmarks/bench_width_grid.py and bench_real_width.py measured).
WIDE_ASPECT = 0.5


#: A layer's "pca-loss" warning needs this many kept components, over its wide sources, at or below the noise
#: edge or with an overlap under deattenuate.OVERLAP_FLOOR (or a correction applied partly): on the known systems of
#: benchmarks/bench_width_grid.py (512-4,096 features, n = 400-1,000, signal 3-8) it fired in 57% of the runs
#: whose interval missed the truth from below and in 7% of the others (one such component: 78% and 37%).
WEAK_COMPONENTS_WARN = 3


def _warn_pca_loss(result: PIDFlowResult, correction: Correction, shapes: list, layer: int) -> None:
    """A "pca-loss" PipelineWarning for each wide source (WIDE_ASPECT) with weak kept components (at or below the
    noise edge, where a signal direction is lost unseen, or with a bounded correction: overlap below
    deattenuate.OVERLAP_FLOOR) when the layer has at least WEAK_COMPONENTS_WARN of them, or for each wide source
    when the correction was applied partly; ``bits``: how much the correction added to the plug-in total."""
    cov = np.cov(result.latents, rowvar=False)
    corrected, share = deattenuate(cov, correction.overlaps)
    starts = np.cumsum((0, *result.dims))
    sources = []
    for index, (name, (n, d)) in enumerate(zip(("x1", "x2"), shapes, strict=True)):
        overlap = correction.overlaps[starts[index]:starts[index + 1]]
        weak = np.isnan(overlap) | (overlap < OVERLAP_FLOOR)
        if d / n >= WIDE_ASPECT:
            sources.append((name, n, d, overlap, weak))
    if sum(int(weak.sum()) for *_, weak in sources) < WEAK_COMPONENTS_WARN and share == 0.0:
        return
    added = gaussian_pid(corrected, result.dims).total - gaussian_pid(cov, result.dims).total
    partly = f"; the correction was applied only {1 - share:.0%} of the way" if share > 0 else ""
    for name, n, d, overlap, weak in sources:
        if not weak.any() and share == 0.0:
            continue
        edge = np.isnan(overlap)
        lowest = f"as low as {np.nanmin(overlap):.2f}" if not edge.all() else "nil"
        warnings.warn(PipelineWarning(
            f"{name} (layer {layer}): with {d} features and {n} questions the sample principal components' directions "
            f"are tilted into the noise (estimated overlap with the population components {lowest}; {edge.sum()} of "
            f"{len(overlap)} at or below the noise edge); the numbers are corrected for it (+{added:.2f} bits of "
            f"total), but components near the edge are corrected only in part and those below it not at all"
            f"{partly}, so the total may still be low (on known systems of this shape by up to 0.9 bits) and the "
            "intervals do not include the refit of the PCA; use more questions, or fewer (pooled or selected) "
            "features", "pca-loss", layer, bits=added), stacklevel=4)


def _correction(fitted, group: tuple, shapes: list) -> Correction | None:
    """The de-attenuation of one layer's latents (sources, target): the overlaps of each wide variable
    (at least WIDE_ASPECT features per question), ones elsewhere; None when nothing is to be undone."""
    if fitted.overlaps is None:
        return None
    parts = [fitted.overlaps[v] if d / n >= WIDE_ASPECT else np.ones(len(fitted.overlaps[v]))
             for v, (n, d) in zip(group, shapes, strict=True)]
    overlaps = np.concatenate(parts)
    return Correction(overlaps) if np.any(np.isnan(overlaps) | (overlaps < 1.0)) else None


def _describe(modes: list, group: tuple) -> str:
    """One layer's Gaussianization in words: the mode, or per variable when they differ."""
    used = [modes[v] for v in group]
    if len(set(used)) == 1:
        return used[0]
    return ", ".join(f"{name} {mode}" for name, mode in zip(("x1", "x2", "y"), used, strict=True))


def _layerwise(checked, fold_ids, dims, gaussianize, measure, estimator, bootstrap, seed, options,
               report, plan: GaussianizationPlan, layer_ids: list, reduce_first: bool = False) -> LayerwiseResult:
    """layerwise after validation: cross-fitted latents of y and every layer's sources, then the PIDs."""
    timings = {"pca": 0.0, "flows": 0.0, "pid": 0.0}
    variables = [(checked[0][2], "y", dims[2], seed + 2)]
    roles = ["y"]
    for position, (a, b, _) in enumerate(checked):
        layer = layer_ids[position]
        variables += [(a, f"x1 (layer {layer})", dims[0], seed, layer), (b, f"x2 (layer {layer})", dims[1], seed + 1,
                                                                         layer)]
        roles += ["x1", "x2"]
    groups = [(1 + 2 * position, 2 + 2 * position, 0) for position in range(len(checked))]
    # share of the whole run per stage: PCA, flows, per-layer PIDs
    flows = gaussianize in ("flow", "auto") and plan.flows is not False
    shares = {"pca": (0.0, 0.05), "flows": (0.05, 0.9)} if flows else {"pca": (0.0, 0.3)}
    pid_start = 0.9 if flows else 0.3

    def stage(name: str, fraction: float, message: str) -> None:
        lo, hi = shares[name]
        report(lo + (hi - lo) * fraction, message)

    report(0.0, "PCA")
    fitted = crossfit(variables, fold_ids, gaussianize, options, timings, report=stage, groups=groups, seed=seed,
                      plan=plan, roles=roles, reduce_first=reduce_first)
    if plan.flows is None:  # decided by crossfit on these layers' latents
        plan = GaussianizationPlan(mode=plan.mode, marginal=plan.marginal, flows=fitted.modes[0] == "flow",
                                   decisions=(*plan.decisions, fitted.flow_decision))
    layer_latents = [fitted.group(position, groups) for position in range(len(checked))]
    rows = len(fold_ids) if fitted.shared else int(min(np.bincount(fold_ids)))
    _warn_small_sample(rows, max(z[0].shape[1] for z in layer_latents), max(z[1].shape[1] for z in layer_latents),
                       layer_latents[0][2].shape[1], estimator)
    results = []
    for position, (z1, z2, zy) in enumerate(layer_latents):
        layer = layer_ids[position]
        at = pid_start + (1 - pid_start) * position / len(checked)
        report(at, f"PID of layer {position + 1}/{len(checked)}")
        used = (z1.shape[1], z2.shape[1], zy.shape[1])
        start = time.perf_counter()
        mode = _describe(fitted.modes, groups[position])

        def tick(index: int, at=at, position=position, last=[0.0]) -> None:  # noqa: B006 - every long loop
            now = time.monotonic()  # reports (at most every TICK_S), so a caller can stop it by raising
            if now - last[0] >= TICK_S:
                last[0] = now
                report(at, f"PID of layer {position + 1}/{len(checked)}: bootstrap round {index + 1}/{bootstrap}")

        correction = _correction(fitted, groups[position], [checked[position][k].shape for k in range(3)]) \
            if fitted.shared else None
        results.append(_result(np.hstack([z1, z2, zy]), fold_ids, used, measure, bootstrap, seed,
                               label=f"layer {layer}", shared=fitted.shared, estimator=estimator,
                               gaussianization=mode, tick=tick, layer=layer, correction=correction))
        if correction is not None:
            _warn_pca_loss(results[-1], correction, [checked[position][k].shape for k in range(2)], layer)
        timings["pid"] += time.perf_counter() - start
    report(1.0, "done")
    return LayerwiseResult(layers=results, timings=timings, plan=plan)
