"""Gaussianization: per-coordinate copula, normalizing flows and the plan that chooses between them.

Takes: each variable's samples (n, d).
Gives: Gaussianized, reduced latents per variable, and the recorded choices (GaussianizationPlan).
"""
