"""Each record's image, loaded once, at the resolution of the model that reads it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.models.vlm.llava import checkpoint_image_size

from .render import load_image


class ImageStore:
    """record -> uint8 pixels (None for a text-only record); relative paths resolve against the world folder."""

    def __init__(self, root: Path, size: int):
        self.root, self.size = Path(root), int(size)
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def for_model(cls, world_dir: Path, model_dir: Path) -> "ImageStore":
        """Images of the world at a saved model's input resolution (read from its config, no model load)."""
        return cls(world_dir, checkpoint_image_size(model_dir))

    def __call__(self, record: dict) -> np.ndarray | None:
        rel = record.get("image")
        if not rel:
            return None
        if rel not in self._cache:
            path = Path(rel) if Path(rel).is_absolute() else self.root / rel
            self._cache[rel] = load_image(path, self.size)
        return self._cache[rel]
