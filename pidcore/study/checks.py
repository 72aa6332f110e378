"""Cautions a study's numbers need: a total more than the answer can carry.

The target Y is the model's answer distribution (log-probabilities over the answer set). When the model is
sure of its answers, Y's rows form one tight cluster per answer: almost all of its variance lies between the
answers' means (``between_share``). A source that also separates the answers (the image's colour, say) then
shares K tight clusters with Y, and the Gaussian estimate counts about 0.5 log2(1 / (1 - rho^2)) bits for
every canonical direction that separates the clusters (rho near 1 for tight clusters): up to K - 1
directions, each worth 2-3 bits, where the shared answer itself is worth at most log2 K bits (3 bits for an
8-way answer). This is a property of Gaussian estimates on clustered (near-discrete) data, not of
near-deterministic latents: the canonical correlations are about 0.98, far from the degenerate-latents cap.
The more target components a recipe keeps, the more such directions it counts: the seed-faithful recipe's
95%-variance PCA keeps all K - 1 of them (7 on the demo's colour task, total 9-14 bits), pidflow's default 4.

``target_clusters`` measures the clustering on a part's baseline; ``answer_bound_cautions`` says, per model
x task x recipe, where a baseline layer's total exceeds log2 K bits (docs/study.md, "Totals above the
answer's entropy").
"""

from __future__ import annotations

import math

import numpy as np

#: A caution needs this share of the target's variance between the answers' means (clustered by answer).
CLUSTERED_SHARE = 0.5


def target_clusters(features) -> dict | None:
    """How the target Y of a run clusters by gold answer: {"answers": K distinct gold answers among the
    questions, "bound_bits": log2 K (the most an K-way answer carries), "entropy_bits": the plug-in entropy of
    the gold answers, "between_share": the share of Y's total variance that lies between the answers' means}.
    None without gold answers (e.g. a features file without them) or with fewer than 2 distinct ones."""
    answers = np.asarray(getattr(features, "answers", None) if features is not None else None, dtype=object)
    if answers.ndim != 1 or len(answers) == 0:
        return None
    labels = np.array([str(a) for a in answers])
    known = labels != ""
    classes, counts = np.unique(labels[known], return_counts=True)
    if len(classes) < 2:
        return None
    y = np.asarray(features.target, dtype=float)[known]
    centred = y - y.mean(axis=0)
    total = float(np.sum(centred**2))
    index = np.searchsorted(classes, labels[known])
    means = np.zeros((len(classes), y.shape[1]))
    np.add.at(means, index, centred)
    means /= counts[:, None]
    between = float(np.sum(counts[:, None] * means**2))
    p = counts / counts.sum()
    return {"answers": int(len(classes)), "bound_bits": float(math.log2(len(classes))),
            "entropy_bits": float(-np.sum(p * np.log2(p))),
            "between_share": between / total if total > 0 else None}


def answer_bound_caution(layers: list[dict], clusters: dict | None, target_dims: int | None = None) -> dict | None:
    """A caution for one baseline's layers when some layer's total exceeds log2 K bits of its K-way answer
    and the target clusters by answer (between_share >= CLUSTERED_SHARE): {"layer", "total_bits",
    "bound_bits", "answers", "between_share", "target_dims", "layers_over", "text"}; None otherwise."""
    if not clusters or not layers or clusters.get("between_share") is None:
        return None
    bound = clusters["bound_bits"]
    over = [layer for layer in layers if float(layer["total"]) > bound]
    if not over or clusters["between_share"] < CLUSTERED_SHARE:
        return None
    top = max(over, key=lambda layer: float(layer["total"]))
    k = clusters["answers"]
    kept = f"keeps {target_dims} target components and " if target_dims else ""
    article = "an" if str(k).startswith("8") or k in (11, 18) else "a"
    text = (f"the total reaches {float(top['total']):.2f} bits (layer {top['layer']}; {len(over)} of {len(layers)} "
            f"layers above {bound:.2f}), more than the log2 {k} = {bound:.2f} bits {article} {k}-way answer can carry. "
            f"The target clusters by answer ({100 * clusters['between_share']:.1f}% of its variance lies between "
            f"the {k} answers' means): this recipe {kept}counts about 0.5 log2(1/(1 - rho^2)) bits for each of "
            f"up to {k - 1} directions separating the clusters, not the clusters' log2 {k} bits. Read these totals "
            f"as how sharply the sources separate the answers, not as bits about the answer; shares between "
            f"recipes with different target sizes are not comparable.")
    return {"layer": int(top["layer"]), "total_bits": float(top["total"]), "bound_bits": bound, "answers": k,
            "between_share": clusters["between_share"], "target_dims": target_dims,
            "layers_over": [int(layer["layer"]) for layer in over], "text": text}
