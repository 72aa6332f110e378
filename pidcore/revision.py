"""Content hash of a local model checkpoint, torch-free (the job layer imports it without loading torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def folder_revision(folder: str | Path) -> str:
    """`local-<16 hex>`: sha256 of config.json's bytes plus the names and sizes of the weight files
    (`*.safetensors`, `*.bin`, `*.index.json`). FileNotFoundError when config.json is missing."""
    folder = Path(folder)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.iterdir()):
        if path.suffix in WEIGHT_SUFFIXES or path.name.endswith(".index.json"):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return "local-" + digest.hexdigest()[:16]
