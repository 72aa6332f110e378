"""Extraction: model adapters, token roles, pooling hooks, attention knockouts and Features.

Names load lazily so that importing a torch-free part (e.g. `pidcore.extract.edges`) stays cheap.
"""

from importlib import import_module

_EXPORTS = {
    "EDGES": "pidcore.extract.edges",
    "FAMILIES": "pidcore.extract.families",
    "Family": "pidcore.extract.families",
    "describe_config": "pidcore.extract.families",
    "family_for": "pidcore.extract.families",
    "BatchRoles": "pidcore.extract.roles",
    "Features": "pidcore.extract.features",
    "Knockout": "pidcore.extract.knockout",
    "LlavaAdapter": "pidcore.extract.adapters",
    "LlavaNextAdapter": "pidcore.extract.adapters",
    "VLMAdapter": "pidcore.extract.adapters",
    "load_adapter": "pidcore.extract.adapters",
    "extract": "pidcore.extract.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pidcore.extract' has no attribute {name!r}")
