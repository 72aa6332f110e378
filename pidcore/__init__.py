"""pidcore: layer-wise Partial Information Decomposition (PID Flow) as a plain library.

All information quantities are in bits. Public names are imported lazily so that
``import pidcore`` stays cheap (torch and nflows load only when a flow is needed).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "gaussian_mi": "pidcore.estimators.info",
    "PID": "pidcore.estimators.pid",
    "gaussian_pid": "pidcore.estimators.pid",
    "solve_union": "pidcore.estimators.pid",
    "pid_flow": "pidcore.pipeline.layerwise",
    "layerwise": "pidcore.pipeline.layerwise",
    "PIDFlowResult": "pidcore.pipeline.layerwise",
    "LayerwiseResult": "pidcore.pipeline.layerwise",
    "gaussianization_plan": "pidcore.pipeline.layerwise",
    "GaussianizationPlan": "pidcore.gaussianize.plan",
    # known-answer systems at a 7B model's width (benchmarks/bench_real_width.py)
    "real_width_system": "pidcore.synthetic",
    # bring your own activations (docs/features-format.md)
    "token_roles": "pidcore.features.pooled",
    "roles_from_masks": "pidcore.features.pooled",
    "pool_roles": "pidcore.features.pooled",
    "answer_states": "pidcore.features.pooled",
    "answer_logprobs": "pidcore.features.pooled",
    "read_features": "pidcore.features.files",
    "write_features": "pidcore.features.files",
    "analyze_features": "pidcore.features.uploaded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pidcore' has no attribute {name!r}")
