"""Estimators: Gaussian mutual information and the closed-form Gaussian PID (MMI, BROJA), bits.

Takes: a covariance of (X1, X2, Y) and its dims (and n for the bias correction).
Gives: PID parts in bits, bias-corrected estimates and bootstrap intervals.
"""
