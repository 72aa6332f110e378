"""The bundled demo model: a small LLaVA-architecture model trained on easy-VQA (no download).

`demo_model_path()` is a folder loadable like any LLaVA checkpoint (LlavaForConditionalGeneration,
AutoProcessor) plus pidflow.json with the prompt template.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def demo_model_path() -> Path:
    """Folder of the shipped demo checkpoint; FileNotFoundError if the weights are missing."""
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"demo model weights not found in {WEIGHTS_DIR}; rebuild them with `python -m pidcore.demo.train`")
    return WEIGHTS_DIR


def build_llava(*args, **kwargs):
    """See pidcore.demo.build.build_llava."""
    from .build import build_llava as build

    return build(*args, **kwargs)


__all__ = ["WEIGHTS_DIR", "build_llava", "demo_model_path"]
