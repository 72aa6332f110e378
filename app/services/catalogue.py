"""Models (configured, with family, knockout edges and decoder-layer count read from their local config),
datasets with their tasks, and dataset images."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from app.precheck import _local_config, _model_family, _num_decoder_layers  # noqa: F401 - re-exported
from app.services.base import ServiceBase
from app.uploads import is_features_model


class Catalogue(ServiceBase):
    """Configured models, datasets and images."""

    def models(self) -> list[dict]:
        """Configured models: `demo` always, more from PIDFLOW_MODELS (num_layers when known)."""
        return [self._describe_model(name) for name in self.settings.models]

    def _describe_model(self, name: str) -> dict:
        if name in self._model_info:
            return dict(self._model_info[name])
        if is_features_model(name):
            info = {"name": name, "num_layers": self._call(self.uploads.num_layers, name)}
        else:
            info = {"name": name, **_model_family(name), "num_layers": self._decoder_layers(name)}
        if info["num_layers"] is not None:  # unknown sizes are looked up again (weights may arrive later)
            self._model_info[name] = info
        return dict(info)

    @staticmethod
    def _decoder_layers(model: str) -> int | None:
        """Decoder-layer count from the model's local config (app.service.AnalysisService looks it up
        through its own module's name, which tests replace)."""
        return _num_decoder_layers(model)

    def datasets(self) -> list[dict]:
        """Datasets with their tasks, as pidcore.data lists them."""
        try:
            data = importlib.import_module("pidcore.data")
            listing = data.list_datasets()
        except (ImportError, AttributeError):
            return []
        if isinstance(listing, dict):
            listing = [{"name": name, **(info if isinstance(info, dict) else {"tasks": info})}
                       for name, info in listing.items()]
        return [_plain(entry) for entry in listing]

    def image_path(self, image_id: str) -> Path:
        """Path of a dataset image (PNG); KeyError if unknown."""
        if "/" in image_id or image_id.startswith("."):
            raise KeyError(f"unknown image {image_id!r}")
        try:
            data = importlib.import_module("pidcore.data")
            path = data.find_image(image_id)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"unknown image {image_id!r}") from exc
        except (ValueError, FileNotFoundError) as exc:
            raise KeyError(str(exc)) from exc
        if path is None or not Path(path).is_file():
            raise KeyError(f"unknown image {image_id!r}")
        return Path(path)

    def deepest_layer(self) -> int | None:
        """The deepest decoder-layer index of any configured model whose size is known here (None if none)."""
        sizes = [info["num_layers"] for info in self.models() if info.get("num_layers")]
        return max(sizes) - 1 if sizes else None



def _plain(entry: Any) -> dict:
    if dataclasses.is_dataclass(entry):
        return dataclasses.asdict(entry)
    return dict(entry)
