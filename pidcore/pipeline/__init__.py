"""The pipeline: layer-wise PID Flow and whole analyses (request -> features -> result document).

Takes: pooled features per layer (or an AnalysisRequest).
Gives: per-layer PID in bits with intervals, knockout effects, the pidflow.result/1 document.
"""
