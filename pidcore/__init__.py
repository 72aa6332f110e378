"""pidcore: layer-wise Partial Information Decomposition (PID Flow) as a plain library.

All information quantities are in bits. Public names are imported lazily so that
``import pidcore`` stays cheap (torch and nflows load only when a flow is needed).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "gaussian_mi": "pidcore.info",
    "PID": "pidcore.pid",
    "gaussian_pid": "pidcore.pid",
    "solve_union": "pidcore.pid",
    "pid_flow": "pidcore.pipeline",
    "layerwise": "pidcore.pipeline",
    "PIDFlowResult": "pidcore.pipeline",
    "LayerwiseResult": "pidcore.pipeline",
    # bring your own activations (docs/features-format.md)
    "token_roles": "pidcore.pooled",
    "roles_from_masks": "pidcore.pooled",
    "pool_roles": "pidcore.pooled",
    "answer_states": "pidcore.pooled",
    "answer_logprobs": "pidcore.pooled",
    "read_features": "pidcore.featurefile",
    "write_features": "pidcore.featurefile",
    "analyze_features": "pidcore.uploaded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pidcore' has no attribute {name!r}")
