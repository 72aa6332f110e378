"""Latents: each variable reduced (PCA) and Gaussianized, ready for the Gaussian PID (pidcore.pipeline.layerwise).

``crossfit`` returns one (n, k) array of latents per variable. Gaussianization modes (``MODES``):

- "none": PCA (or centring) only;
- "copula": per-coordinate normal scores (pidcore.gaussianize.copula) of the raw features, then PCA;
- "flow": the copula latents, then joint flows (pidcore.gaussianize.jointflow: the pairs (X_k, Y) jointly Gaussian under
  one shared target map), cross-fitted;
- "auto": per variable "none" or "copula" by the variance-weighted non-Gaussianity of its features
  (pidcore.gaussianize.plan), then the joint flows only when some probe layer's latents are jointly non-Gaussian and the
  flows raise the held-out joint Gaussian log-likelihood of the probe layers' (X1, X2, Y) by more than
  ``FLOW_MARGIN`` nats per sample (plus ``RAW_MARGIN`` per coordinate that enters the flows in raw
  coordinates) and GAIN_SES standard errors; the probe uses at most ``PROBE_LAYERS`` evenly spaced layers.
  pidcore.pipeline.layerwise makes these choices once per analysis (a GaussianizationPlan).

PCA and the copula are unsupervised (each sees one variable only), so they are fitted on all rows: they
cannot create dependence between variables, and every row's latents are in one coordinate system
(``CrossFitted.shared`` is True). The flows see (X_k, Y) pairs, so they are cross-fitted (each fold
transformed by flows trained on the other folds) and each fold has its own coordinates (``shared`` False);
they are fitted per layer, so a layer's numbers do not depend on which other layers were analysed with it.
See docs/pipeline.md.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pidcore.gaussianize.copula import empirical_log_density, normal_scores
from pidcore.gaussianize.plan import (
    GAIN_SES,
    JOINT_Z,
    Decision,
    GaussianizationPlan,
    mardia_kurtosis_z,
    marginal_decision,
    probe_indices,
)
from pidcore.reduce.pca import PCAReducer

MODES = ("auto", "none", "copula", "flow")

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
    group_latents: list | None = None
    flow_decision: Decision | None = None
    overlaps: list | None = None  # per variable, (k,) spiked-covariance overlaps of its latents (no flows)

    def group(self, index: int, groups: list) -> list:
        """The latents of group ``index`` (its variables in group order): per-group flow latents when the
        flows were fitted, else the variables' shared latents."""
        if self.group_latents is not None:
            return self.group_latents[index]
        return [self.latents[v] for v in groups[index]]


class _Centre:
    """Centring only: used when a variable has no more features than the requested dims, so an
    element-wise warp of its coordinates stays element-wise."""

    def fit(self, x):
        self.mean_ = x.mean(axis=0)
        return self

    def transform(self, x):
        return x - self.mean_


class PipelineWarning(RuntimeWarning):
    """A warning of the PID Flow pipeline as data: ``kind`` (e.g. "low-rank", "degenerate", "small-sample",
    "flows-failed", "pca-loss"), ``layer`` (the layer index it concerns, None for all) and ``bits`` (the
    amount it states, e.g. a pca-loss warning's expected loss; None otherwise)."""

    def __init__(self, message: str, kind: str, layer: int | None = None, bits: float | None = None):
        super().__init__(message)
        self.kind, self.layer, self.bits = kind, layer, bits

    def to_dict(self) -> dict:
        """{"layer", "kind", "message"} and, for a warning that states an amount, "bits"."""
        record = {"layer": self.layer, "kind": self.kind, "message": str(self)}
        if self.bits is not None:
            record["bits"] = float(self.bits)
        return record


def _reducer(x: np.ndarray, dims: int, name: str):
    """A fitted reducer for one variable: centring only when it has no more features than ``dims`` (full
    rank), else a PCA capped at the data's rank."""
    if (x.shape[1] <= dims and x.shape[1] < len(x) and np.all(x.std(axis=0) > 0)
            and np.linalg.matrix_rank(x - x.mean(axis=0)) == x.shape[1]):
        return _Centre().fit(x)
    return PCAReducer(n_components=min(dims, x.shape[1], len(x) - 1), cap_at_rank=True).fit(x, name)


def _standardise(z: np.ndarray) -> np.ndarray:
    z = z - z.mean(axis=0)
    spread = z.std(axis=0)
    return z / np.where(spread > 0, spread, 1.0)


#: Reductions are remembered by content, up to this many bytes of results per process: a study's knockout runs
#: share the baseline's vision features (the cut leaves the image tokens alone) and target, so each is reduced
#: once. ``clear_reduction_cache()`` forgets them.
REDUCTION_CACHE_BYTES = 256 * 2**20
_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_reduction_cache() -> None:
    """Forget every remembered reduction."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cache_key(x: np.ndarray, *options) -> tuple:
    data = np.ascontiguousarray(x)
    return (hashlib.sha256(data.data).hexdigest(), data.shape, data.dtype.str, *options)  # SHA-NI: ~18 ms for 32 MB


def _size(value: tuple) -> int:
    return sum(part.nbytes for part in value[:3] if isinstance(part, np.ndarray))


def _reduce(x: np.ndarray, dims: int, name: str, copula: bool, layer: int | None = None,
            reduce_first: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(n, k) standardised latents of one variable: (normal scores, then) PCA, fitted on all rows; for the
    copula of a variable that is only centred (no PCA), its standardised raw coordinates (the flows' starting
    point: monotone in the latents coordinate by coordinate), else None; and (k,) each latent's estimated
    overlap with its population component (pidcore.reduce.pca.spiked_overlap; 1 where not reduced, NaN at or
    below the noise edge).
    ``reduce_first``: PCA of the raw features first, then normal scores of the kept components (the seed
    recipe's order). Results are remembered by content (REDUCTION_CACHE_BYTES); a "low-rank" warning is given
    on every call that returns fewer components than asked."""
    key = _cache_key(x, dims, copula, reduce_first)
    with _CACHE_LOCK:
        value = _CACHE.get(key)
        if value is not None:
            _CACHE.move_to_end(key)
    if value is None:
        value = _reduce_uncached(x, dims, name, copula, reduce_first)
        with _CACHE_LOCK:
            _CACHE[key] = value
            while sum(_size(v) for v in _CACHE.values()) > REDUCTION_CACHE_BYTES and len(_CACHE) > 1:
                _CACHE.popitem(last=False)
    latents, raw, overlaps, wanted = value
    if latents.shape[1] < wanted:  # low-rank data (e.g. embeddings of a few question templates) keeps its rank
        warnings.warn(PipelineWarning(f"{name}: the data has rank {latents.shape[1]} < {wanted} requested components; "
                                      f"keeping {latents.shape[1]}", "low-rank", layer), stacklevel=3)
    return latents.copy(), None if raw is None else raw.copy(), overlaps.copy()


def _reduce_uncached(x: np.ndarray, dims: int, name: str, copula: bool, reduce_first: bool) -> tuple:
    """_reduce's (latents, raw, overlaps) and the number of components asked for."""
    wanted = min(dims, x.shape[1])
    if reduce_first:
        reducer = _reducer(x, dims, name)
        reduced = reducer.transform(x)
        return _standardise(normal_scores(reduced) if copula else reduced), None, _overlap(reducer), wanted
    data = normal_scores(x) if copula else x
    reducer = _reducer(data, dims, name)
    raw = _standardise(x) if copula and isinstance(reducer, _Centre) else None
    return _standardise(reducer.transform(data)), raw, _overlap(reducer), wanted


def _overlap(reducer) -> np.ndarray:
    """(k,) spiked-covariance overlaps of a fitted reducer's components (1 where not reduced: centring only;
    NaN for a component at or below the noise edge, whose direction cannot be told from noise)."""
    overlap = getattr(reducer, "overlap_", None)
    if overlap is None:
        return np.ones(reducer.transform(reducer.mean_[None, :]).shape[1])
    return np.asarray(overlap, dtype=float)


def _flow_options(flow_options: dict) -> dict:
    from pidcore.gaussianize.jointflow import OPTIONS

    unknown = sorted(set(flow_options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown flow option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    return dict(flow_options)


def crossfit(variables: list, fold_ids, gaussianize, flow_options: dict, timings: dict, report=None,
             groups: list | None = None, seed: int = 0, plan: GaussianizationPlan | None = None,
             roles: list | None = None, reduce_first: bool = False) -> CrossFitted:
    """Latents (n, k) per variable (x, name, dims, seed) for the Gaussianization mode ``gaussianize``
    (see the module docstring; booleans accepted). ``groups``: tuples of variable indices (sources...,
    target) that the PID uses together (one per layer), needed by the flows; default: all variables
    as one group. ``reduce_first``: PCA before the marginal Gaussianization (see _reduce). ``plan``: a
    pidcore.gaussianize.plan.GaussianizationPlan made beforehand (then ``roles`` names each variable's role, "x1", "x2"
    or "y"); without one, "auto" decides per variable and on the flows here.
    ``flow_options``: options of pidcore.gaussianize.jointflow.fit_joint_flows; the flows are fitted per group (layer),
    each with ``seed``, so a layer's latents do not depend on the other layers.
    The variables' copula and PCA run on ``flow_options["threads"]`` Python threads (default 2).
    ``report(stage, fraction, message)`` tells how far the PCA ("pca") and flow ("flows") stages are;
    ``timings`` gains the seconds spent in "pca" (copula + PCA) and "flows"."""
    mode = check_mode(gaussianize)
    report = report or (lambda stage, fraction, message: None)
    options = _flow_options(flow_options) if mode in ("flow", "auto") else {}
    groups = [tuple(range(1, len(variables))) + (0,)] if groups is None else [tuple(g) for g in groups]
    start = time.perf_counter()
    if plan is not None:
        copula = [plan.marginal[role] == "copula" for role in roles]
    elif mode == "auto":
        copula = [marginal_decision(v[1], [v[0]]).choice == "copula" for v in variables]
    else:
        copula = [mode in ("copula", "flow")] * len(variables)

    def prepare(item) -> tuple:
        variable, use_copula = item  # (x, name, dims, seed[, layer])
        x, name, dims = variable[:3]
        return _reduce(x, dims, name, use_copula, variable[4] if len(variable) > 4 else None, reduce_first)

    threads = options.get("threads") or 2
    with ThreadPoolExecutor(max_workers=threads) as pool:  # BLAS and sorting release the GIL
        reduced = list(pool.map(prepare, zip(variables, copula, strict=True)))
    latents, starts, overlaps = ([r[i] for r in reduced] for i in range(3))
    timings["pca"] = timings.get("pca", 0.0) + time.perf_counter() - start
    report("pca", 1.0, f"PCA of {len(variables)} variables done")
    modes = ["copula" if c else "none" for c in copula]
    if mode in ("none", "copula"):
        return CrossFitted(latents=latents, shared=True, modes=modes, overlaps=overlaps)
    from pidcore.gaussianize.jointflow import FlowFailed

    start = time.perf_counter()
    folds = len(np.unique(fold_ids))
    flows = FlowStage(latents, starts, fold_ids, seed, options)
    try:
        decision = None
        if plan is None or plan.flows is None:
            decision = flows.decide(groups, mode)
            use_flows = decision.choice == "flow"
            gain = decision.statistic if decision.measure == "flow-gain" else None
        else:
            use_flows, gain = plan.flows, None
        if not use_flows:
            return CrossFitted(latents=latents, shared=True, modes=modes, flow_gain=gain, flow_decision=decision,
                               overlaps=overlaps)

        def flows_done(done: int, total: int) -> None:
            count = len(variables) * folds
            report("flows", done / total, f"normalizing flows {count * done // total}/{count} trained")

        flows_done(0, 1)
        group_latents, gains = flows.fit_per_group(groups, flows_done)
        return CrossFitted(latents=latents, shared=False, modes=["flow"] * len(latents),
                           flow_gain=float(np.mean(gains)), group_latents=group_latents, flow_decision=decision)
    except (FlowFailed, RuntimeError) as error:  # degenerate latents (a few question templates), non-finite output
        reason = str(error).splitlines()[0][:200]
        if mode != "auto":
            raise ValueError(f"the joint flows could not be fitted ({reason}); use gaussianize='auto' or "
                             "'copula'") from error
        message = (f"joint flows could not be fitted ({reason}); kept the {', '.join(sorted(set(modes)))} "
                   "latents (gaussianize='auto')")
        warnings.warn(PipelineWarning(message, kind="flows-failed"), stacklevel=3)
        return CrossFitted(latents=latents, shared=True, modes=modes,
                           flow_decision=Decision("flows", "none", 0.0, 0.0, 0.0, f"could not be fitted ({reason})",
                                                  "none"))
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


class FlowStage:
    """The joint flows over reduced latents: the auto decision (a probe on a few layers) and per-layer fits.

    A copula variable that is only centred and looks mixed (``jointflow.ica_unmixing``) enters the flows as
    its standardised raw coordinates (the flow starts there: unmixing, then normal scores), not as its normal
    scores: a spline cannot map the normal scores back exactly, and its error, once mixed by the unmixing,
    is not undone later (docs/pipeline.md). The flows then compete with the copula latents plus the copula
    map's held-out log-Jacobian."""

    def __init__(self, latents: list, starts: list, fold_ids, seed: int, options: dict):
        from pidcore.gaussianize.jointflow import ica_unmixing

        self.latents, self.fold_ids, self.seed, self.options = latents, fold_ids, seed, options
        if options.get("n_layers", 3) < 3:  # no room for the start (spline, unmixing, spline): copula inputs
            starts = [None] * len(latents)
        # only a variable that looks mixed takes the raw route; an element-wise warp starts at its copula latents
        self.starts = [None if raw is None or ica_unmixing(raw) is None else raw for raw in starts]
        self.inputs = [latents[v] if self.starts[v] is None else self.starts[v] for v in range(len(latents))]
        self.jacobians = [None if self.starts[v] is None else _copula_log_jacobian(self.starts[v], latents[v],
                                                                                  fold_ids)
                          for v in range(len(latents))]

    def margin(self, groups: list) -> float:
        """FLOW_MARGIN plus RAW_MARGIN per raw-coordinate input per layer (nats per sample)."""
        raw = [0 if self.starts[v] is None else self.latents[v].shape[1] for v in range(len(self.latents))]
        return FLOW_MARGIN + RAW_MARGIN * float(np.mean([sum(raw[v] for v in g) for g in groups]))

    def fit(self, used: list, fit_groups: list, seed: int, progress=None):
        from pidcore.gaussianize.jointflow import fit_joint_flows

        return fit_joint_flows([self.inputs[v] for v in used], fit_groups, self.fold_ids, seed=seed,
                               starts=[self.starts[v] for v in used],
                               baseline=([self.latents[v] for v in used], [self.jacobians[v] for v in used]),
                               progress=progress, **self.options)

    def decide(self, groups: list, mode: str) -> Decision:
        """"flow" or "none": forced in mode "flow"; in "auto", flows are tried on at most PROBE_LAYERS evenly
        spaced layers only when some probe layer's latents are jointly non-Gaussian (Mardia's kurtosis
        z-score above JOINT_Z), and kept when their held-out gain exceeds the margin by GAIN_SES standard
        errors (statistic: gain, nats per sample; margin: GAIN_SES standard errors)."""
        from pidcore.gaussianize.jointflow import FlowFailed

        if mode == "flow":
            return Decision("flows", "flow", 0.0, 0.0, 0.0, "forced (gaussianize='flow')", "none")
        probe = [groups[i] for i in probe_indices(len(groups), PROBE_LAYERS)]
        joint = max(mardia_kurtosis_z(np.hstack([self.latents[v] for v in g])) for g in probe)
        if not np.isfinite(joint) or joint <= JOINT_Z:
            return Decision("flows", "none", joint, JOINT_Z, 1.0,
                            "latents jointly Gaussian after the marginal step (Mardia kurtosis z-score)", "mardia-z")
        used = sorted({v for g in probe for v in g})
        index = {v: i for i, v in enumerate(used)}
        try:
            trial = self.fit(used, [tuple(index[v] for v in g) for g in probe], self.seed)
        except (FlowFailed, RuntimeError) as error:  # degenerate latents (a few question templates)
            reason = str(error).splitlines()[0][:200]
            warnings.warn(PipelineWarning(f"joint flows could not be fitted ({reason}); kept the marginal latents "
                                          "(gaussianize='auto')", "flows-failed"), stacklevel=4)
            return Decision("flows", "none", 0.0, 0.0, 0.0, f"could not be fitted ({reason})", "none")
        threshold = self.margin(probe)
        spread = GAIN_SES * trial.gain_se
        if trial.gain - spread > threshold:
            return Decision("flows", "flow", trial.gain, threshold, spread,
                            "the flows raise the held-out joint likelihood beyond the margin", "flow-gain")
        return Decision("flows", "none", trial.gain, threshold, spread,
                        "the flows do not raise the held-out joint likelihood beyond the margin", "flow-gain")

    def fit_per_group(self, groups: list, progress=None) -> tuple[list, list]:
        """Per group (layer), its variables' held-out flow latents (group order) and the flows' gain; each
        group's flows are fitted alone with the same seed, so they do not depend on the other groups."""
        out, gains = [], []
        for number, group in enumerate(groups):
            fit = self.fit(list(group), [tuple(range(len(group)))], self.seed)
            out.append(fit.latents)
            gains.append(fit.gain)
            if progress is not None:
                progress(number + 1, len(groups))
        return out, gains
