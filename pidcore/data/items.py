"""Question records shared by every dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VQAItem:
    """One visual question with its gold answer and image file."""

    qid: str
    dataset: str
    task: str
    question: str
    answer: str
    image_id: str
    image_path: str

    def load_image(self):
        """The image as an RGB PIL image; FileNotFoundError / ValueError naming the path."""
        return load_rgb(self.image_path)


class TaskInfo(dict):
    """A named task: {"name", "description"} (a dict, so it serialises to JSON as is)."""

    def __init__(self, name: str, description: str):
        super().__init__(name=name, description=description)

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def description(self) -> str:
        return self["description"]


class DatasetInfo(dict):
    """A dataset listing: {"name", "description", "splits", "tasks": [TaskInfo]} (a JSON-ready dict)."""

    def __init__(self, name: str, description: str, splits: tuple[str, ...], tasks: tuple[TaskInfo, ...]):
        super().__init__(name=name, description=description, splits=list(splits), tasks=list(tasks))

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def description(self) -> str:
        return self["description"]

    @property
    def splits(self) -> list[str]:
        return self["splits"]

    @property
    def tasks(self) -> list[TaskInfo]:
        return self["tasks"]

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]


def load_rgb(path: str | Path):
    """Open an image file as RGB; clear errors naming the path."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"unreadable image file {path}: {exc}") from exc
