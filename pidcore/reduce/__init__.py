"""Reduction: PCA of one variable's features (wide data through the Gram matrix).

Takes: samples (n, d).
Gives: a few components, their variances and their estimated overlap with the population ones.
"""
