"""The revision of a model for cache keys, found without loading weights or importing torch.

Same string as the adapter's `revision` (both use pidcore.revision.folder_revision): "local-<hash>" for
the demo model and local folders (config.json plus weight file names and sizes), the commit sha for a
Hugging Face id found in the local cache, "unresolved" for a Hugging Face id not downloaded yet.
"""

from __future__ import annotations

from pathlib import Path

from pidcore.revision import folder_revision

UNRESOLVED = "unresolved"


def model_revision(model: str) -> str:
    """Revision string of "demo", a local folder or a Hugging Face id; ValueError if none of these.
    An uploaded features file ("features:<sha256>") is named by its content: "features"."""
    if model.startswith("features:"):
        return "features"
    if model == "demo":
        from pidcore.demo import demo_model_path

        try:
            return folder_revision(demo_model_path())
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from exc
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"no config.json in model folder {path}")
        return folder_revision(path)
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ValueError(f"model {model!r} is neither 'demo', a local folder nor a Hugging Face id")
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json")
    if isinstance(found, str):
        return Path(found).parent.name  # .../snapshots/<commit sha>/config.json
    return UNRESOLVED
