"""Train many nflows spline MAFs of one shape at once, as one batched model.

The flows are ordinary nflows ``Flow``s (``RandomPermutation`` + masked rational-quadratic autoregressive
transforms, as built by ``FlowGaussianizer``). Their weights are stacked along a leading "model" axis and
applied with ``torch.bmm`` (the MADE masks are shared, the permutations are per model), and the splines
are nflows' own ``rational_quadratic_spline`` (linear tails as in nflows). Every model keeps its own data, train /
validation split, mini-batch order (its own seeded generator), Adam state (Adam acts element-wise, so
stacking changes nothing), early stopping and best-epoch weights; a model that stops leaves the batch.
The best weights are written back into each nflows flow, so the result equals training the flows one
after another up to float rounding. Log-likelihoods are in nats per sample.
"""

from __future__ import annotations

import math

import torch
from nflows.transforms import MaskedPiecewiseRationalQuadraticAutoregressiveTransform, RandomPermutation
from nflows.transforms.splines.rational_quadratic import rational_quadratic_spline
from torch.nn import functional as F


def _linears(maf) -> list:
    """The MADE's masked linear layers in order: initial, (block linear 0, block linear 1)*, final."""
    net = maf.autoregressive_net
    if getattr(net, "use_residual_blocks", True) is not True or any(b.use_batch_norm for b in net.blocks):
        raise ValueError("batched training supports residual MADE blocks without batch norm only")
    return [net.initial_layer, *[layer for block in net.blocks for layer in block.linear_layers], net.final_layer]


def _layers(flow) -> list:
    """(permutation, spline MAF) pairs of a flow built as RandomPermutation, MAF, RandomPermutation, MAF..."""
    parts = list(flow._transform._transforms)
    pairs = list(zip(parts[::2], parts[1::2], strict=True))
    for perm, maf in pairs:
        if not (isinstance(perm, RandomPermutation)
                and isinstance(maf, MaskedPiecewiseRationalQuadraticAutoregressiveTransform)
                and maf.tails == "linear"):
            raise ValueError("batched training expects (RandomPermutation, linear-tail spline MAF) pairs")
    return pairs


class StackedFlows:
    """The flows' parameters stacked on a leading model axis, with a batched log-density.

    Per MAF layer: weights (M, in, out) and biases (M, 1, out) of the MADE's masked linears in order;
    the masks (in, out) are shared by all models, the permutations (M, D) are per model.
    """

    def __init__(self, flows: list):
        pairs = [_layers(flow) for flow in flows]
        first = pairs[0]
        self.spline = [(maf.num_bins, maf.tail_bound, maf.min_bin_width, maf.min_bin_height, maf.min_derivative)
                       for _, maf in first]
        self.masks = [[lin.mask.t().contiguous() for lin in _linears(maf)] for _, maf in first]
        self.perms = [torch.stack([p[i][0]._permutation for p in pairs]) for i in range(len(first))]
        self.params = []
        for i in range(len(first)):
            linears = [_linears(p[i][1]) for p in pairs]
            for j in range(len(linears[0])):
                self.params.append(torch.stack([lin[j].weight.detach().t() for lin in linears]).contiguous())
                self.params.append(torch.stack([lin[j].bias.detach()[None] for lin in linears]).contiguous())
        self.per_layer = 2 * len(self.masks[0])

    def log_prob(self, x: torch.Tensor, params: list, perms: list) -> torch.Tensor:
        """(M, B) log-densities (nats) of x (M, B, D) under the M flows given by ``params`` / ``perms``."""
        z, logdet = self.forward(x, params, perms)
        return -0.5 * (z * z).sum(dim=2) - 0.5 * z.shape[2] * math.log(2 * math.pi) + logdet

    def forward(self, x: torch.Tensor, params: list, perms: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise (M, B, D) and log|det Jacobian| (M, B) of x (M, B, D): each flow's ``transform_to_noise``."""
        m, b, d = x.shape
        logdet = x.new_zeros(m, b)
        for i, masks in enumerate(self.masks):
            x = torch.gather(x, 2, perms[i][:, None, :].expand(m, b, d))
            layer = params[i * self.per_layer:(i + 1) * self.per_layer]
            weights, biases = layer[::2], layer[1::2]
            hidden = torch.baddbmm(biases[0], x, weights[0] * masks[0])
            for k in range(1, len(masks) - 1, 2):  # residual blocks: relu, linear, relu, linear, add
                temp = torch.baddbmm(biases[k], torch.relu(hidden), weights[k] * masks[k])
                hidden = hidden + torch.baddbmm(biases[k + 1], torch.relu(temp), weights[k + 1] * masks[k + 1])
            out = torch.baddbmm(biases[-1], hidden, weights[-1] * masks[-1]).view(m, b, d, -1)
            bins = self.spline[i][0]
            # split, not three slices: its backward is one concatenation instead of three zero-filled copies
            x, logabs = _linear_tail_spline(x, *out.split([bins, bins, bins - 1], dim=-1), *self.spline[i])
            logdet = logdet + logabs.sum(dim=2)
        return x, logdet

    def write_back(self, flows: list, params: list) -> None:
        """Copy model m's slice of ``params`` into flows[m] (nflows layout: weight (out, in))."""
        for m, flow in enumerate(flows):
            tensors = iter(params)
            for _, maf in _layers(flow):
                for lin in _linears(maf):
                    lin.weight.data.copy_(next(tensors)[m].t())
                    lin.bias.data.copy_(next(tensors)[m, 0])


def to_noise(flows: list, data: torch.Tensor) -> torch.Tensor:
    """``flows[m].transform_to_noise(data[m])`` for all m at once: data (M, B, D) -> noise (M, B, D)."""
    stack = StackedFlows(flows)
    with torch.no_grad():
        return stack.forward(data, stack.params, stack.perms)[0]


def _linear_tail_spline(x, widths, heights, derivatives, bins, bound, min_width, min_height, min_derivative):
    """nflows' linear-tail rational-quadratic spline without its boolean-mask indexing: the spline is
    evaluated on inputs clamped to [-bound, bound] and the identity is used outside (same values)."""
    inside = (x >= -bound) & (x <= bound)
    edge = math.log(math.expm1(1 - min_derivative))  # the derivative nflows pads at both ends
    y, logabs = rational_quadratic_spline(
        x.clamp(-bound, bound), widths, heights, F.pad(derivatives, (1, 1), value=edge),
        left=-bound, right=bound, bottom=-bound, top=bound, min_bin_width=min_width,
        min_bin_height=min_height, min_derivative=min_derivative)
    return torch.where(inside, y, x), torch.where(inside, logabs, 0.0)


def validation_size(n: int, validation: float) -> int:
    """Samples held out for early stopping: the ``validation`` fraction of ``n``, at least one."""
    return max(1, int(n * validation))


def split_train_validation(z: torch.Tensor, generator: torch.Generator, validation: float):
    """(train, validation) rows of ``z`` in the seeded ``generator``'s random order."""
    order = torch.randperm(len(z), generator=generator)
    n_val = validation_size(len(z), validation)
    return z[order[n_val:]], z[order[:n_val]]


def train_flows(flows: list, data: list, seeds: list, *, max_epochs: int, batch_size: int,
                learning_rate: float, validation: float, patience: int) -> list:
    """Fit each nflows flow to its (n, D) float32 tensor by maximum likelihood, all in one batched model.

    Same n and D for every model. Per model: a seeded split into train / ``validation`` fraction,
    mini-batches of ``batch_size`` in a seeded order, Adam with ``learning_rate``; stops after
    ``patience`` epochs without a validation gain of 1e-4 nats, best weights kept. Returns per model
    (epochs trained, best mean validation log-likelihood in nats). The flows end in eval mode.
    """
    if len({tuple(z.shape) for z in data}) != 1 or len(data) != len(flows) or len(seeds) != len(flows):
        raise ValueError("train_flows needs one seed and one (n, D) tensor of a common shape per flow")
    stack = StackedFlows(flows)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    splits = [split_train_validation(z, g, validation) for z, g in zip(data, generators, strict=True)]
    train = torch.stack([s[0] for s in splits])
    val = torch.stack([s[1] for s in splits])
    total = len(flows)
    active = torch.arange(total)
    params = [p.clone().requires_grad_() for p in stack.params]
    best_params = [p.clone() for p in stack.params]
    best = torch.full((total,), -math.inf, dtype=torch.float64)
    stale = torch.zeros(total, dtype=torch.long)
    epochs = torch.zeros(total, dtype=torch.long)
    has_best = torch.zeros(total, dtype=torch.bool)
    optimiser = torch.optim.Adam(params, lr=learning_rate, foreach=True)
    for _ in range(max_epochs):
        perms = [p[active] for p in stack.perms]
        orders = torch.stack([torch.randperm(train.shape[1], generator=generators[int(m)]) for m in active])
        for batch in orders.split(batch_size, dim=1):
            rows = torch.gather(train, 1, batch[..., None].expand(-1, -1, train.shape[2]))
            optimiser.zero_grad()
            loss = -stack.log_prob(rows, params, perms).mean(dim=1).sum()
            loss.backward()
            optimiser.step()
        epochs[active] += 1
        with torch.no_grad():
            score = stack.log_prob(val, params, perms).mean(dim=1).double()
        better = score > best[active] + 1e-4
        stale[active] = torch.where(better, 0, stale[active] + 1)
        best[active] = torch.where(better, score, best[active])
        has_best[active] |= better
        for keep, p in zip(best_params, params, strict=True):
            keep[active[better]] = p.detach()[better]
        done = stale[active] >= patience
        _keep_last(best_params, params, active, done & ~has_best[active])
        if bool(done.all()):
            return _finish(stack, flows, best_params, epochs, best)
        if bool(done.any()):
            params, optimiser = _drop(params, optimiser, ~done)
            train, val, active = train[~done], val[~done], active[~done]
    _keep_last(best_params, params, active, ~has_best[active])
    return _finish(stack, flows, best_params, epochs, best)


def _keep_last(best_params: list, params: list, active: torch.Tensor, rows: torch.Tensor) -> None:
    """Models (``rows`` of the active batch) that never improved keep their last weights, as in a single fit."""
    for keep, p in zip(best_params, params, strict=True):
        keep[active[rows]] = p.detach()[rows]


def _drop(params: list, optimiser: torch.optim.Adam, rows: torch.Tensor):
    """New leaf parameters and Adam holding only the models in ``rows``, with their Adam state."""
    kept = [p.detach()[rows].clone().requires_grad_() for p in params]
    fresh = torch.optim.Adam(kept, lr=optimiser.defaults["lr"], foreach=True)
    for old, new in zip(params, kept, strict=True):
        state = optimiser.state[old]
        fresh.state[new] = {"step": state["step"].clone(), "exp_avg": state["exp_avg"][rows].clone(),
                            "exp_avg_sq": state["exp_avg_sq"][rows].clone()}
    return kept, fresh


def _finish(stack: StackedFlows, flows: list, best_params: list, epochs: torch.Tensor, best: torch.Tensor) -> list:
    stack.write_back(flows, best_params)
    for flow in flows:
        flow.eval()
    return [(int(e), float(b)) for e, b in zip(epochs, best, strict=True)]
