"""Scenes of coloured shapes on a 3x3 grid: the ground truth every image, caption and grade comes from.

Position names drop the redundant word of the middle row and the center column, as people do:

    top left     top      top right
    left         center   right
    bottom left  bottom   bottom right

so "middle center" is "center", "middle left" is "left" and "top center" is "top".
Within a scene every object has its own cell and its own (colour, shape) pair, which keeps
"the red circle" a unique reference; sizes may repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import require_keys

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
OBJ_KEYS = ("shape", "colour", "size", "row", "col")
_ALLOWED = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "row": ROWS, "col": COLS}


def position_name(row: str, col: str) -> str:
    """The cell's name in captions and questions (see the module docstring)."""
    if row == "middle":
        return "center" if col == "center" else col
    return row if col == "center" else f"{row} {col}"


POSITIONS: dict[str, tuple[str, str]] = {position_name(r, c): (r, c) for r in ROWS for c in COLS}


@dataclass(frozen=True)
class Obj:
    """One filled shape in one grid cell."""

    shape: str
    colour: str
    size: str
    row: str
    col: str

    def __post_init__(self) -> None:
        for key in OBJ_KEYS:
            value = getattr(self, key)
            if value not in _ALLOWED[key]:
                raise ValueError(f"object {key} {value!r} is not one of {_ALLOWED[key]}")

    @property
    def cell(self) -> tuple[int, int]:
        """(row index, column index), 0-based from the top left."""
        return ROWS.index(self.row), COLS.index(self.col)

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)

    @property
    def ref(self) -> tuple[str, str]:
        """(colour, shape): the object's unique name within its scene."""
        return self.colour, self.shape

    def to_dict(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in OBJ_KEYS}


@dataclass(frozen=True)
class Scene:
    """A non-empty set of objects, kept in reading order so equal scenes compare (and hash) equal."""

    objects: tuple[Obj, ...]

    def __post_init__(self) -> None:
        objects = tuple(self.objects)
        if not objects:
            raise ValueError("scene has no objects")
        for obj in objects:
            if not isinstance(obj, Obj):
                raise ValueError(f"scene object {obj!r} is not an Obj")
        cells = [o.cell for o in objects]
        refs = [o.ref for o in objects]
        for index, obj in enumerate(objects):
            if cells.index(obj.cell) != index:
                raise ValueError(f"two objects share the cell {obj.position!r}")
            if refs.index(obj.ref) != index:
                raise ValueError(f"two objects are both a {obj.colour} {obj.shape}")
        object.__setattr__(self, "objects", tuple(sorted(objects, key=lambda o: o.cell)))

    def find(self, colour: str, shape: str) -> Obj | None:
        return next((o for o in self.objects if o.ref == (colour, shape)), None)

    def with_shape(self, shape: str) -> list[Obj]:
        return [o for o in self.objects if o.shape == shape]

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [o.to_dict() for o in self.objects]}

    @staticmethod
    def from_dict(d: Any) -> Scene:
        """Rebuild a scene from `to_dict` output; ValueError names the bad key or value."""
        if not isinstance(d, dict):
            raise ValueError(f"scene must be a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - {"objects"})
        if unknown:
            raise ValueError(f"scene has unknown key {unknown[0]!r}")
        if "objects" not in d:
            raise ValueError("scene is missing key 'objects'")
        if not isinstance(d["objects"], list):
            raise ValueError(f"scene key 'objects' must be a list, got {type(d['objects']).__name__}")
        objects = []
        for index, item in enumerate(d["objects"]):
            where = f"scene objects[{index}]"
            require_keys(item, OBJ_KEYS, where)
            for key in OBJ_KEYS:
                if item[key] not in _ALLOWED[key]:
                    raise ValueError(f"{where} key {key!r} has bad value {item[key]!r}")
            extra = sorted(set(item) - set(OBJ_KEYS))
            if extra:
                raise ValueError(f"{where} has unknown key {extra[0]!r}")
            objects.append(Obj(**{key: item[key] for key in OBJ_KEYS}))
        return Scene(tuple(objects))


def sample_scene(rng: np.random.Generator, min_objects: int = 1, max_objects: int = 4) -> Scene:
    """Draw a uniform object count, then distinct cells, distinct (colour, shape) pairs and sizes."""
    if not 1 <= min_objects <= max_objects <= len(ROWS) * len(COLS):
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 9, got {min_objects}, {max_objects}")
    n = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(len(ROWS) * len(COLS), size=n, replace=False)
    kinds = rng.choice(len(COLOURS) * len(SHAPES), size=n, replace=False)
    sizes = rng.integers(0, len(SIZES), size=n)
    objects = []
    for cell, kind, size in zip(cells, kinds, sizes):
        row, col = divmod(int(cell), len(COLS))
        colour, shape = divmod(int(kind), len(SHAPES))
        objects.append(Obj(SHAPES[shape], COLOURS[colour], SIZES[int(size)], ROWS[row], COLS[col]))
    return Scene(tuple(objects))
