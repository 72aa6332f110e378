"""The Gaussianization plan: what ``gaussianize="auto"`` chooses, decided once per analysis.

One decision per variable (vision x1, language x2, target y) across all layers of a run, and one on the
joint flows, each recorded with its statistic, threshold and margin (a decision whose statistic lies within
its margin of the threshold is a close call and says so). The plan is made before any layer is analysed
(before layer batches fan out in the service) and is shared by a knockout run and its baseline, so the same
data give the same numbers whatever the batching. See docs/pipeline.md, "Gaussianization".

- Marginal step (per variable): the variance-weighted mean Jarque-Bera statistic of its raw features (each
  column's n (skew^2 / 6 + excess kurtosis^2 / 24), weighted by the column's share of the total variance,
  i.e. by what PCA sees), averaged over the layers. Under Gaussian columns each term has mean 2 and sd 2.
  "copula" when the statistic exceeds ``2 + MARGINAL_SDS`` null sds, else "none".
- Flows (auto): tried only when the copula/PCA latents of some probe layer are jointly non-Gaussian
  (Mardia's multivariate kurtosis, as a z-score, above ``JOINT_Z``): otherwise there is nothing for a
  Gaussianizing flow to gain. When tried, kept if their held-out gain exceeds the margin by ``GAIN_SES``
  standard errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

ROLES = ("x1", "x2", "y")
#: What a Decision's statistic is: the marginal step's variance-weighted Jarque-Bera mean, the probe latents'
#: Mardia kurtosis z-score, the flows' held-out gain (nats per sample), or none (a forced or failed choice).
MEASURES = ("jarque-bera", "mardia-z", "flow-gain", "none")
#: "copula" when the variance-weighted Jarque-Bera mean exceeds 2 (its null mean) by this many null sds.
MARGINAL_SDS = 4.0
#: The null sd of the weighted mean assumes at most this many independent columns (features are correlated).
INDEPENDENT_COLUMNS = 16
#: The marginal decision looks at this many evenly spaced layers at most.
MARGINAL_PROBES = 8
#: Flows are tried when Mardia's kurtosis z-score of some probe layer's latents exceeds this.
JOINT_Z = 4.0
#: Flows are kept when their held-out gain exceeds the margin by this many standard errors.
GAIN_SES = 2.0


@dataclass(frozen=True)
class Decision:
    """One choice of the plan: ``variable`` ("x1", "x2", "y" or "flows"), ``choice``, the ``statistic`` it was
    made on (``measure`` names it: one of MEASURES), the ``threshold`` it was compared with and the ``margin``
    (null sd or standard error) within which it counts as a close call; ``reason`` in words."""

    variable: str
    choice: str
    statistic: float
    threshold: float
    margin: float
    reason: str
    measure: str = "jarque-bera"

    @property
    def close(self) -> bool:
        """True when the statistic lies within one margin of the threshold (a perturbation could flip it)."""
        return bool(abs(self.statistic - self.threshold) < self.margin)

    def to_dict(self) -> dict:
        return {**asdict(self), "close": self.close}


@dataclass(frozen=True)
class GaussianizationPlan:
    """``mode``: the requested mode; ``marginal``: role -> "none" or "copula"; ``flows``: whether the joint
    flows are trained (per layer); ``decisions``: how each choice was made."""

    mode: str
    marginal: dict
    flows: bool
    decisions: tuple = field(default=())

    def to_dict(self) -> dict:
        return {"mode": self.mode, "marginal": dict(self.marginal), "flows": self.flows,
                "decisions": [d.to_dict() for d in self.decisions]}

    @classmethod
    def from_dict(cls, data: dict) -> GaussianizationPlan:
        decisions = tuple(Decision(**{k: v for k, v in d.items() if k != "close"}) for d in data.get("decisions", []))
        marginal = {role: data["marginal"][role] for role in ROLES}
        if any(m not in ("none", "copula") for m in marginal.values()):
            raise ValueError(f"a plan's marginal modes must be 'none' or 'copula', got {marginal}")
        return cls(mode=data["mode"], marginal=marginal, flows=bool(data["flows"]), decisions=decisions)

    def describe(self) -> str:
        """The choices in words, e.g. "x1 copula, x2 copula, y none; no flows (latents jointly Gaussian)"."""
        marginal = ", ".join(f"{role} {self.marginal[role]}" for role in ROLES)
        flows = [d for d in self.decisions if d.variable == "flows"]
        tail = "flows" if self.flows else "no flows"
        if flows:
            tail += f" ({flows[0].reason})"
        return f"{marginal}; {tail}"


def weighted_jarque_bera(x: np.ndarray) -> tuple[float, float]:
    """(statistic, null sd): the mean over columns of n (skew^2 / 6 + excess kurtosis^2 / 24), weighted by each
    column's variance share; the null sd of that mean for Gaussian columns (at most INDEPENDENT_COLUMNS
    independent ones). Constant and discrete columns (fewer distinct values than n / 2) carry no weight."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    centred = x - x.mean(axis=0)
    squares = centred * centred
    variance = squares.mean(axis=0)
    live = (variance > 0) & _continuous(x)  # a discrete column has no density to Gaussianize
    if not live.any():
        return 0.0, 2.0
    if not live.all():  # boolean indexing copies: only when some column is left out
        centred, squares, variance = centred[:, live], squares[:, live], variance[live]
    # column sums of products without (n, d) temporaries
    skew = np.einsum("ij,ij->j", squares, centred) / n / variance**1.5
    kurtosis = np.einsum("ij,ij->j", squares, squares) / n / variance**2 - 3.0
    jb = n * (skew**2 / 6.0 + kurtosis**2 / 24.0)
    weights = variance / variance.sum()
    concentration = max(float(np.sum(weights**2)), 1.0 / INDEPENDENT_COLUMNS)
    return float(np.dot(weights, jb)), 2.0 * float(np.sqrt(concentration))


#: Discreteness is judged on the first this many rows (enough to tell a handful of levels from a continuum).
DISCRETE_ROWS = 200


def _continuous(x: np.ndarray) -> np.ndarray:
    """Per column: at least half of (the first DISCRETE_ROWS) rows hold distinct values."""
    head = np.array(x[:DISCRETE_ROWS].T, order="C")  # a copy: contiguous rows sort faster than columns
    head.sort(axis=1)
    distinct = 1 + np.count_nonzero(np.diff(head, axis=1) > 0, axis=1)
    return distinct >= len(head[0]) / 2


def marginal_decision(role: str, layers: list) -> Decision:
    """"copula" or "none" for one variable from its raw features on (at most MARGINAL_PROBES evenly spaced of)
    the layers given: one decision for all of them."""
    scores = [weighted_jarque_bera(layers[i]) for i in probe_indices(len(layers), MARGINAL_PROBES)]
    statistic = float(np.mean([s for s, _ in scores]))
    sd = float(np.mean([s for _, s in scores]))
    threshold = 2.0 + MARGINAL_SDS * sd
    if statistic > threshold:
        return Decision(role, "copula", statistic, threshold, sd,
                        "its high-variance features are measurably non-Gaussian (variance-weighted Jarque-Bera)")
    return Decision(role, "none", statistic, threshold, sd,
                    "its features are consistent with Gaussian marginals (variance-weighted Jarque-Bera)")


def mardia_kurtosis_z(z: np.ndarray) -> float:
    """Mardia's multivariate kurtosis of the rows of ``z`` as a z-score (0 for Gaussian rows, > 0 for heavy
    joint tails): (b2 - d(d+2)(n-1)/(n+1)) / sqrt(8 d (d+2) / n)."""
    n, d = z.shape
    centred = z - z.mean(axis=0)
    cov = centred.T @ centred / n
    solved = np.linalg.lstsq(cov, centred.T, rcond=None)[0].T
    b2 = float(np.mean(np.einsum("ij,ij->i", centred, solved) ** 2))
    expected = d * (d + 2) * (n - 1) / (n + 1)
    return (b2 - expected) / float(np.sqrt(8 * d * (d + 2) / n))


def fixed_plan(mode: str) -> GaussianizationPlan:
    """The plan of an explicit mode ("none", "copula", "flow"): nothing is decided from the data."""
    marginal = "none" if mode == "none" else "copula"
    return GaussianizationPlan(mode=mode, marginal=dict.fromkeys(ROLES, marginal), flows=mode == "flow")


def probe_indices(count: int, probes: int) -> list[int]:
    """At most ``probes`` evenly spaced indices of ``count`` layers."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(probes, count)).round()})
