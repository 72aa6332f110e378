"""Flows trained for the PID's own need (Flow-PID objective): each variable gets its own invertible map,
trained so that every layer's (X1, X2, Y) (or, as in the Flow-PID paper, the pairs (X_k, Y)) is jointly
Gaussian under one shared target map.

Per variable the flow is ``n_layers`` per-coordinate rational-quadratic splines (linear tails, bound 4)
with a full invertible linear map between consecutive splines (spline, linear, spline for 2 layers), so
it can undo an element-wise warp, a rotation, and an element-wise warp again. It starts at the identity
(the input latents, already copula-normalised and reduced), and is trained by maximum likelihood of the
transformed pairs under a Gaussian with their own (profile) covariance plus the log-Jacobians; the target's
map is shared by all pairs. Cross-fitted: the maps applied to one fold were trained on the other folds only
(they see (X_k, Y) pairs, so fitting them on all rows would let them create X-Y dependence). Log-likelihoods
are in nats per sample.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2 * math.pi)
_QUIET = threading.Lock()
_MIN_WIDTH = _MIN_HEIGHT = 1e-3
_MIN_DERIVATIVE = 1e-3
#: Floating-point type of the flows (float32: about twice as fast as float64 here, ample for likelihoods).
DTYPE = torch.float32

#: A group whose covariance has an eigenvalue below this fraction of its largest is degenerate (no flows).
DEGENERATE_RTOL = 1e-6

#: Options of ``fit_joint_flows`` (and so of ``flow_options`` in pidcore.pipeline.layerwise).
OPTIONS = ("n_layers", "num_bins", "max_epochs", "batch_size", "learning_rate", "validation", "patience",
           "reductions", "objective", "optimizer", "threads")


@dataclass(frozen=True)
class JointFlowFit:
    """``latents``: per variable, (n, k) held-out transformed latents (each fold by the flows trained on the
    other folds). ``gain``: held-out Gaussian log-likelihood of the flows' latents (with their log-Jacobians)
    minus that of the input latents, in nats per sample, summed over the scoring groups and averaged over
    groups and folds (> 0: the flows make the groups more jointly Gaussian than the input was).
    ``epochs``: epochs trained per fold; ``gain_se``: the gain's standard error over held-out rows (nats)."""

    latents: list
    gain: float
    epochs: list
    gain_se: float = 0.0


def _spline(x, uw, uh, ud, us, bound):
    """Per-coordinate monotone rational-quadratic spline on the box [-B, B] (``bound`` (M, d)), with a
    learnable output span 2 B exp(us) and learnable end slopes, continued by straight lines of those slopes
    outside the box. x (M, N, d); parameters (M, d, K), (M, d, K), (M, d, K + 1), (M, d). At the identity
    initialisation (all zero but ``ud`` = softplus^-1(1 - min derivative)) it is the identity.
    Returns (y, log|dy/dx|), both (M, N, d)."""
    m, n, d = x.shape
    k = uw.shape[-1]
    half = bound[..., None]
    widths = (_MIN_WIDTH + (1 - _MIN_WIDTH * k) * torch.softmax(uw, dim=-1)) * 2 * half
    heights = (_MIN_HEIGHT + (1 - _MIN_HEIGHT * k) * torch.softmax(uh, dim=-1)) * 2 * half * torch.exp(us)[..., None]
    zero = widths.new_zeros(m, d, 1)
    cw = torch.cat([zero, torch.cumsum(widths, -1)], -1) - half
    ch = torch.cat([zero, torch.cumsum(heights, -1)], -1)
    ch = ch - ch[..., -1:] / 2
    deriv = _MIN_DERIVATIVE + F.softplus(ud)  # (M, d, K + 1)
    lo, hi = cw[..., :1].transpose(1, 2), cw[..., -1:].transpose(1, 2)  # (M, 1, d)
    xc = torch.minimum(torch.maximum(x, lo), hi)
    index = (xc[..., None] >= cw[:, None, :, 1:-1]).sum(-1, keepdim=True)  # (M, N, d, 1), bins 0..K-1

    def pick(table):
        return torch.gather(table[:, None].expand(m, n, d, table.shape[-1]), -1, index)[..., 0]

    x_k, w_k, y_k, h_k = pick(cw[..., :-1]), pick(widths), pick(ch[..., :-1]), pick(heights)
    d_k, d_k1 = pick(deriv[..., :-1]), pick(deriv[..., 1:])
    s = h_k / w_k
    xi = ((xc - x_k) / w_k).clamp(0, 1)
    t = xi * (1 - xi)
    denom = s + (d_k1 + d_k - 2 * s) * t
    y = y_k + h_k * (s * xi * xi + d_k * t) / denom
    logabs = 2 * torch.log(s) + torch.log(d_k1 * xi * xi + 2 * s * t + d_k * (1 - xi) ** 2) - 2 * torch.log(denom)
    below, above = x < lo, x > hi
    slope_lo, slope_hi = deriv[..., 0][:, None], deriv[..., -1][:, None]  # (M, 1, d)
    y = torch.where(below, ch[..., 0][:, None] + slope_lo * (x - lo), y)
    y = torch.where(above, ch[..., -1][:, None] + slope_hi * (x - hi), y)
    logabs = torch.where(below, torch.log(slope_lo).expand_as(logabs), logabs)
    logabs = torch.where(above, torch.log(slope_hi).expand_as(logabs), logabs)
    return y, logabs


def unmixing_score(x: np.ndarray, unmixing: np.ndarray) -> float:
    """Held-out log-likelihood (nats per sample) of ``x`` (n, d) under "s = x unmixing^T, then a Gaussian
    copula": log|det unmixing| + the empirical log-densities of the components (fitted on the even rows,
    evaluated on the odd ones) + the Gaussian copula's log-density of their normal scores. It does not
    depend on the scale of each component; it is higher the closer the components are to an element-wise
    warp of a Gaussian."""
    from pidcore.gaussianize.copula import empirical_log_density, normal_scores

    s = x @ unmixing.T
    marginal = empirical_log_density(s[::2], s[1::2]).sum(axis=1).mean()
    z = normal_scores(s)[1::2]
    corr = np.atleast_2d(np.corrcoef(normal_scores(s)[::2], rowvar=False))
    sign, logdet = np.linalg.slogdet(corr)
    if sign <= 0:
        return -math.inf
    quad = np.einsum("ij,ij->i", z @ (np.linalg.inv(corr) - np.eye(len(corr))), z).mean()
    return float(np.linalg.slogdet(unmixing)[1] + marginal - 0.5 * logdet - 0.5 * quad)


def ica_unmixing(x: np.ndarray) -> np.ndarray | None:
    """The FastICA unmixing (whitening included, (d, d)) of ``x`` (n, d) when it scores higher than no
    unmixing under ``unmixing_score`` (the coordinates look like a linear mix of an element-wise warp of a
    Gaussian), else None (also when FastICA fails)."""
    import warnings

    from sklearn.decomposition import FastICA

    with _QUIET, warnings.catch_warnings():  # the folds' threads: one warnings filter at a time
        warnings.simplefilter("ignore")  # FastICA's convergence warnings: the start is only a guess
        unmixing = FastICA(whiten="unit-variance", random_state=0, max_iter=400).fit(x).components_
    if not np.all(np.isfinite(unmixing)) or abs(np.linalg.slogdet(unmixing)[1]) > 50:
        return None
    if unmixing_score(x, unmixing) <= unmixing_score(x, np.eye(len(unmixing))):
        return None
    return unmixing


class _Stack:
    """The flows of M variables of one dimension d, parameters stacked on a leading model axis.

    ``x`` (M, N, d): the variables' values, used for the spline boxes (each layer's box covers its inputs
    at the start, 5% wider). ``starts`` (M, N, d) or None: per model, values that are monotone functions of
    its inputs coordinate by coordinate (NaN for models without one); the first spline then starts as
    that map (e.g. back from normal scores to the raw coordinates) instead of the identity."""

    def __init__(self, m: int, d: int, layers: int, bins: int, x: torch.Tensor, starts: torch.Tensor | None = None):
        identity_derivative = math.log(math.expm1(1 - _MIN_DERIVATIVE))
        self.uw = torch.zeros(layers, m, d, bins, dtype=DTYPE)
        self.uh = torch.zeros(layers, m, d, bins, dtype=DTYPE)
        self.ud = torch.full((layers, m, d, bins + 1), identity_derivative, dtype=DTYPE)
        self.us = torch.zeros(layers, m, d, dtype=DTYPE)
        self.w = torch.eye(d, dtype=DTYPE).repeat(max(layers - 1, 0), m, 1, 1)
        self.b = torch.zeros(max(layers - 1, 0), m, 1, d, dtype=DTYPE)
        self.layers = layers
        self.bound = torch.ones(max(layers, 1), m, d, dtype=DTYPE)
        if layers == 0:
            return
        self.bound[0] = x.abs().amax(dim=1) * 1.05 + 1e-3
        started = None
        if starts is not None:
            started = torch.isfinite(starts).all(dim=2).all(dim=1)  # (M,) models with a start
            self._fit_spline(0, x, starts, started)
        with torch.no_grad():
            for layer in range(1, layers):
                x = self._layer(x, layer - 1, self.params())[0]
                ica = layer == 1 and layers >= 3 and started is not None and bool(started.any())
                if ica:
                    self._unmix(x, started)
                x = torch.baddbmm(self.b[layer - 1], x, self.w[layer - 1].transpose(1, 2))
                self.bound[layer] = x.abs().amax(dim=1) * 1.05 + 1e-3
                if ica:
                    from pidcore.gaussianize.copula import normal_scores

                    scores = torch.full_like(x, float("nan"))
                    for i in torch.nonzero(started).flatten().tolist():
                        scores[i] = torch.as_tensor(normal_scores(x[i].double().numpy()), dtype=DTYPE)
                    self._fit_spline(1, x, scores, started)
                    # the remaining boxes from the started state (linear maps still the identity)
                    for later in range(2, layers):
                        x = self._layer(x, later - 1, self.params())[0]
                        x = torch.baddbmm(self.b[later - 1], x, self.w[later - 1].transpose(1, 2))
                        self.bound[later] = x.abs().amax(dim=1) * 1.05 + 1e-3
                    break

    def _unmix(self, h: torch.Tensor, started: torch.Tensor) -> None:
        """First linear map of each started model: the identity or the FastICA unmixing (whitening
        included) of its values ``h`` (M, N, d) after the first spline, whichever gives the higher held-out
        likelihood under "linear map, then a Gaussian copula" (``unmixing_score``), so the start undoes a
        rotation after an element-wise warp and leaves an element-wise warp alone; its bias centres the
        components."""
        for i in torch.nonzero(started).flatten().tolist():
            values = h[i].double().numpy()
            unmixing = ica_unmixing(values)
            if unmixing is None:
                continue
            self.w[0, i] = torch.as_tensor(unmixing, dtype=DTYPE)
            self.b[0, i, 0] = torch.as_tensor(-values.mean(axis=0) @ unmixing.T, dtype=DTYPE)

    def _fit_spline(self, layer: int, x: torch.Tensor, targets: torch.Tensor, models: torch.Tensor) -> None:
        """Spline ``layer`` of the ``models`` (bool (M,)) through the monotone pairs (x, targets) per coordinate:
        knots at quantiles of x (blended with uniform spacing), heights and slopes from the pairs; the
        following linear map's bias re-adds the offset the centred spline output drops."""
        bins = self.uw.shape[-1]
        for i in torch.nonzero(models).flatten().tolist():
            for j in range(x.shape[2]):
                xs, ts = np.sort(x[i, :, j].double().numpy()), np.sort(targets[i, :, j].double().numpy())
                half = float(self.bound[layer, i, j])
                uniform = np.linspace(-half, half, bins + 1)
                knots = 0.8 * np.quantile(xs, np.linspace(0, 1, bins + 1)) + 0.2 * uniform
                knots[0], knots[-1] = -half, half
                tail = max(2, len(xs) // 50)
                slope_lo = (ts[tail] - ts[0]) / max(xs[tail] - xs[0], 1e-12)
                slope_hi = (ts[-1] - ts[-1 - tail]) / max(xs[-1] - xs[-1 - tail], 1e-12)
                y = np.interp(knots, xs, ts)
                y[0] = ts[0] - (xs[0] - knots[0]) * slope_lo
                y[-1] = ts[-1] + (knots[-1] - xs[-1]) * slope_hi
                widths, heights = np.diff(knots), np.maximum(np.diff(y), 1e-6 * (y[-1] - y[0]))
                span = heights.sum()
                secant = heights / widths
                deriv = np.r_[secant[0], 2 * secant[:-1] * secant[1:] / (secant[:-1] + secant[1:]), secant[-1]]
                self.uw[layer, i, j] = torch.as_tensor(np.log(np.maximum(widths / (2 * half) - _MIN_WIDTH, 1e-9)))
                self.uh[layer, i, j] = torch.as_tensor(np.log(np.maximum(heights / span - _MIN_HEIGHT, 1e-9)))
                self.us[layer, i, j] = math.log(span / (2 * half))
                excess = np.maximum(deriv - _MIN_DERIVATIVE, 1e-9)  # softplus^-1, without overflow
                self.ud[layer, i, j] = torch.as_tensor(np.where(excess > 30, excess,
                                                                np.log(np.expm1(np.minimum(excess, 30)))))
                if layer < self.layers - 1:  # the spline's output is centred: the next bias shifts it back
                    self.b[layer, i, 0, j] = float(y[0] + span / 2)

    def _layer(self, x, layer: int, params):
        uw, uh, ud, us, _, _ = params
        return _spline(x, uw[layer], uh[layer], ud[layer], us[layer], self.bound[layer])

    def params(self) -> list:
        return [self.uw, self.uh, self.ud, self.us, self.w, self.b]

    def forward(self, x: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (M, N, d) -> (z (M, N, d), log|det J| (M, N))."""
        uw, uh, ud, us, w, b = params if params is not None else self.params()
        logdet = x.new_zeros(x.shape[:2])
        for layer in range(self.layers):
            if layer > 0:
                x = torch.baddbmm(b[layer - 1], x, w[layer - 1].transpose(1, 2))
                logdet = logdet + torch.linalg.slogdet(w[layer - 1])[1][:, None]
            x, logabs = _spline(x, uw[layer], uh[layer], ud[layer], us[layer], self.bound[layer])
            logdet = logdet + logabs.sum(-1)
        return x, logdet


class _Model:
    """All variables' flows (stacked by dimension) and the groups scored / trained together."""

    def __init__(self, dims: list[int], layers: int, bins: int, data: dict | None = None, starts: dict | None = None):
        self.by_dim: dict[int, list[int]] = {}
        for v, d in enumerate(dims):
            self.by_dim.setdefault(d, []).append(v)
        if data is None:
            layers = 0
        self.stacks = {d: _Stack(len(vs), d, layers, bins, None if data is None else data[d],
                                 None if starts is None else starts.get(d))
                       for d, vs in self.by_dim.items()}

    def params(self) -> list:
        return [p for stack in self.stacks.values() for p in stack.params()]

    def forward(self, data: dict, rows, params=None) -> tuple[list, list]:
        """Per variable: transformed rows (N, d) and log|det J| (N,)."""
        count = sum(len(v) for v in self.by_dim.values())
        z, logdet = [None] * count, [None] * count
        offset = 0
        for d, stack in self.stacks.items():
            part = None if params is None else params[offset:offset + 6]
            offset += 6
            out, ld = stack.forward(data[d][:, rows], part)
            for i, v in enumerate(self.by_dim[d]):
                z[v], logdet[v] = out[i], ld[i]
        return z, logdet


class FlowFailed(ValueError):
    """The joint flows could not be trained on these latents (callers fall back to the copula / PCA latents)."""


class DegenerateLatents(FlowFailed):
    """Some group's covariance is singular even after a small ridge (e.g. a target with a few distinct values)."""


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of (G, D, D) covariances with a ridge of 1e-5 of their mean variance (float32 needs
    one; it caps a deterministic direction near 8 bits); DegenerateLatents if that is not enough."""
    scale = torch.diagonal(cov, dim1=1, dim2=2).mean(-1).clamp_min(1e-12)[:, None, None]
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
    chol, info = torch.linalg.cholesky_ex(cov + 1e-5 * scale * eye)
    if bool((info != 0).any()) or not bool(torch.isfinite(chol).all()):
        raise DegenerateLatents("the latents of some layer are (almost) deterministic functions of one another")
    return chol


def _stack_groups(z: list, logdet: list, groups: list) -> list:
    """Groups of one total dimension stacked: [(zg (G, N, D), logdet sum (G, N))]."""
    by_size: dict[int, list] = {}
    for g in groups:
        by_size.setdefault(sum(z[v].shape[1] for v in g), []).append(g)
    out = []
    for members in by_size.values():
        zg = torch.stack([torch.cat([z[v] for v in g], dim=1) for g in members])
        ld = torch.stack([sum(logdet[v] for v in g) for g in members])
        out.append((zg, ld))
    return out


def _profile_nll(z: list, logdet: list, groups: list) -> torch.Tensor:
    """Sum over groups of the mean negative Gaussian log-likelihood (nats) under each group's own (1/N)
    covariance, minus the log-Jacobians."""
    total = 0.0
    for zg, ld in _stack_groups(z, logdet, groups):
        centred = zg - zg.mean(dim=1, keepdim=True)
        cov = centred.transpose(1, 2) @ centred / zg.shape[1]
        chol = _cholesky(cov)
        half_logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
        total = total + (half_logdet + 0.5 * zg.shape[2] * (1 + _LOG_2PI) - ld.mean(dim=1)).sum()
    return total


def _held_out_log_lik(train: tuple, test: tuple, groups: list, per_row: bool = False) -> torch.Tensor:
    """(groups,) mean held-out Gaussian log-likelihood (nats per sample) of each group: Gaussian fitted on
    the training rows' transformed values, evaluated on the test rows, plus their log-Jacobians."""
    scores = []
    for (ztr, _), (zte, ldte) in zip(_stack_groups(*train, groups), _stack_groups(*test, groups), strict=True):
        mean = ztr.mean(dim=1, keepdim=True)
        centred = ztr - mean
        cov = centred.transpose(1, 2) @ centred / ztr.shape[1]
        chol = _cholesky(cov)
        sol = torch.linalg.solve_triangular(chol, (zte - mean).transpose(1, 2), upper=False)
        quad = (sol * sol).sum(1)
        half_logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1, keepdim=True)
        rows = -0.5 * quad - half_logdet - 0.5 * zte.shape[2] * _LOG_2PI + ldte
        scores.append(rows if per_row else rows.mean(dim=1))
    # groups were regrouped by size; the order of the sum does not matter for the callers (they sum)
    if per_row:  # (rows,) the mean over groups of each test row's log-likelihood
        return torch.cat(scores).mean(dim=0)
    return torch.cat(scores)


def _baseline(latents: list, baseline: tuple | None) -> tuple[list, list]:
    """Per variable: the baseline's latents and per-row log-Jacobians (zeros: the inputs themselves), tensors."""
    values, jacobians = baseline if baseline is not None else (latents, [None] * len(latents))
    z = [torch.as_tensor(v, dtype=DTYPE) for v in values]
    return z, [torch.zeros(len(v), dtype=DTYPE) if j is None else torch.as_tensor(j, dtype=DTYPE)
               for v, j in zip(z, jacobians, strict=True)]


def _pairs(groups: list) -> list:
    """(source, target) pairs of scoring groups (sources..., target): the Flow-PID objective."""
    return list(dict.fromkeys((v, g[-1]) for g in groups for v in g[:-1]))


def _fit_fold(data: dict, dims: list, train_rows: np.ndarray, groups: list, train_groups: list, options: dict,
              seed: int, starts: dict | None = None):
    """Train on ``train_rows`` (seeded train / validation split, early stopping on the validation rows'
    held-out likelihood, best parameters kept, starting from the identity). Returns (model, epochs)."""
    generator = torch.Generator().manual_seed(seed)
    order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
    n_val = max(2, int(len(order) * options["validation"]))
    val, fit = torch.as_tensor(order[:n_val]), torch.as_tensor(order[n_val:])
    model = _Model(dims, options["n_layers"], options["num_bins"], data, starts)
    params = [p.clone().requires_grad_() for p in model.params()]

    def score() -> float:
        with torch.no_grad():
            try:
                return float(_held_out_log_lik(model.forward(data, fit, params), model.forward(data, val, params),
                                               groups).sum())
            except DegenerateLatents:
                return -math.inf

    best, best_params, stale, epochs = score(), [p.detach().clone() for p in params], 0, 0
    if options["n_layers"] == 0 or options["max_epochs"] == 0:
        return model, 0
    lbfgs = options["optimizer"] == "lbfgs"
    if lbfgs:  # full batch, 10 quasi-Newton iterations per "epoch"
        optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=20, line_search_fn="strong_wolfe")
    else:
        optimiser = torch.optim.Adam(params, lr=options["learning_rate"])
    batch = len(fit) if options["batch_size"] is None else min(int(options["batch_size"]), len(fit))
    rate, reductions = options["learning_rate"], 0

    def closure():
        optimiser.zero_grad()
        loss = _profile_nll(*model.forward(data, fit, params), train_groups)
        loss.backward()
        return loss

    for _ in range(options["max_epochs"]):
        try:
            if lbfgs:
                optimiser.step(closure)
            else:
                for rows in fit[torch.randperm(len(fit), generator=generator)].split(batch):
                    if len(rows) < batch // 2:
                        continue
                    optimiser.zero_grad()
                    loss = _profile_nll(*model.forward(data, rows, params), train_groups)
                    loss.backward()
                    optimiser.step()
        except DegenerateLatents:  # a step made some layer singular: keep the best parameters so far
            break
        epochs += 1
        current = score()
        if math.isfinite(current) and current > best + 1e-4 * len(groups):
            best, best_params, stale = current, [p.detach().clone() for p in params], 0
        else:
            stale += 1
            if stale >= options["patience"]:  # plateau: halve the step from the best parameters, or stop
                reductions += 1
                if reductions > options["reductions"]:
                    break
                if lbfgs:
                    break
                rate, stale = rate / 2, 0
                with torch.no_grad():
                    for p, q in zip(params, best_params, strict=True):
                        p.copy_(q)
                optimiser = torch.optim.Adam(params, lr=rate)
    offset = 0
    for stack in model.stacks.values():
        stack.uw, stack.uh, stack.ud, stack.us, stack.w, stack.b = best_params[offset:offset + 6]
        offset += 6
    return model, epochs


def fit_joint_flows(latents: list, groups: list, fold_ids: np.ndarray, *, n_layers: int = 3, num_bins: int = 16,
                    max_epochs: int = 50, batch_size: int | None = 256, learning_rate: float = 1e-2,
                    validation: float = 0.2, patience: int = 3, reductions: int = 3, objective: str = "joint",
                    optimizer: str = "lbfgs", starts: list | None = None, baseline: tuple | None = None,
                    threads: int | None = None, seed: int = 0, progress=None) -> JointFlowFit:
    """Cross-fitted joint flows of ``latents`` (one (n, k) array per variable, standardised).

    ``groups``: tuples of variable indices (sources..., target) whose values must be jointly Gaussian
    (one per layer: (x1, x2, y)); they score the fit. ``objective``: "joint" (each whole group jointly
    Gaussian, the target's map shared by all groups; measured better, docs/pipeline.md) or "pairs" (the
    Flow-PID paper's: every (source, target) pair of a group). ``starts``: per variable None or values
    monotone in its latents coordinate by coordinate (the raw coordinates of normal scores): its flow then
    starts there, then FastICA unmixing, then normal scores of the components (with 3 or more layers).
    ``baseline``: (latents, log_jacobians) the flows compete with, when they differ from ``latents`` (the
    flows' inputs): per variable (n, k) latents and None or (n,) held-out log|d baseline / d input| (nats)
    per row, so that ``gain`` compares both models' densities of the same inputs. Default: the inputs.
    ``progress(done, total)`` after each fold. Deterministic for a ``seed``.
    """
    if objective not in ("pairs", "joint"):
        raise ValueError(f"objective must be 'pairs' or 'joint', got {objective!r}")
    if not 0.0 < validation < 1.0:
        raise ValueError(f"validation must be in (0, 1), got {validation!r}")
    for name, value in (("n_layers", n_layers), ("max_epochs", max_epochs), ("patience", patience),
                        ("reductions", reductions)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    options = {"n_layers": int(n_layers), "num_bins": int(num_bins), "max_epochs": int(max_epochs),
               "batch_size": batch_size, "learning_rate": learning_rate, "validation": validation,
               "patience": int(patience), "reductions": int(reductions),
               "optimizer": optimizer}
    for g in groups:  # a deterministic direction makes the likelihood unbounded: nothing to learn from it
        values = np.linalg.eigvalsh(np.cov(np.hstack([latents[v] for v in g]), rowvar=False))
        if values[0] <= DEGENERATE_RTOL * values[-1]:
            raise DegenerateLatents("the latents of some layer are (almost) deterministic functions of one another")
    dims = [z.shape[1] for z in latents]
    model_dims = _Model(dims, 0, 2).by_dim
    data = {d: torch.as_tensor(np.stack([latents[v] for v in vs]), dtype=DTYPE)
            for d, vs in model_dims.items()}
    start_data = None
    if starts is not None and any(s is not None for s in starts):
        start_data = {d: torch.as_tensor(np.stack([starts[v] if starts[v] is not None else np.full_like(latents[v], np.nan)
                                                   for v in vs]), dtype=DTYPE)
                      for d, vs in model_dims.items()}
    train_groups = _pairs(groups) if objective == "pairs" else groups
    folds = list(np.unique(fold_ids))
    threads = min(len(folds), 2 if threads is None else int(threads))
    done = [0]

    def fit(index: int):
        fold = folds[index]
        model, epochs = _fit_fold(data, dims, np.flatnonzero(fold_ids != fold), groups, train_groups, options,
                                  seed + 7 * index, start_data)
        done[0] += 1
        if progress is not None:
            progress(done[0], len(folds))
        return model, epochs

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads <= 1:
            fitted = [fit(i) for i in range(len(folds))]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                fitted = list(pool.map(fit, range(len(folds))))
        out = [np.empty_like(z) for z in latents]
        gains = []
        with torch.no_grad():
            base_z, base_jacobian = _baseline(latents, baseline)
            for fold, (model, _) in zip(folds, fitted, strict=True):
                train = torch.as_tensor(np.flatnonzero(fold_ids != fold))
                test = torch.as_tensor(np.flatnonzero(fold_ids == fold))
                z, _ = model.forward(data, test)
                for v, values in enumerate(z):
                    out[v][test.numpy()] = values.numpy()
                flowed = _held_out_log_lik(model.forward(data, train), model.forward(data, test), groups, True)
                base = _held_out_log_lik(([b[train] for b in base_z], [j[train] for j in base_jacobian]),
                                         ([b[test] for b in base_z], [j[test] for j in base_jacobian]), groups,
                                         True)
                gains.append((flowed - base).numpy())
    finally:
        torch.set_num_threads(previous)
    if not all(np.all(np.isfinite(z)) for z in out):
        raise FlowFailed("the joint flows produced non-finite latents")
    rows = np.concatenate(gains)
    return JointFlowFit(latents=out, gain=float(np.mean([g.mean() for g in gains])), epochs=[e for _, e in fitted],
                        gain_se=float(rows.std() / np.sqrt(len(rows))))
