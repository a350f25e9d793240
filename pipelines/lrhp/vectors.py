"""Pair vectors on disk: one safetensors file of named ``[n, dim]`` tensors plus the record ids per name."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file

VECTORS_NAME = "vectors.safetensors"
IDS_NAME = "vector_ids.json"


def save_vectors(folder: Path, tensors: Mapping[str, torch.Tensor], ids: Mapping[str, Sequence[str]]) -> None:
    """Write ``vectors.safetensors`` and ``vector_ids.json`` (the ids give the row order of each tensor)."""
    for name, t in tensors.items():
        if t.shape[0] != len(ids[name]):
            raise ValueError(f"vectors {name!r}: {t.shape[0]} rows but {len(ids[name])} ids")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(folder / VECTORS_NAME))
    (folder / IDS_NAME).write_text(json.dumps({k: list(v) for k, v in ids.items()}) + "\n")


def load_vectors(folder: Path, name: str, records: Sequence[dict]) -> torch.Tensor:
    """The ``name`` vectors, checked to be in the order of ``records`` (by id): stale vectors fail loudly."""
    path = folder / VECTORS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {VECTORS_NAME}; run the lrhp stage first")
    ids = json.loads((folder / IDS_NAME).read_text()).get(name)
    tensors = load_file(str(path))
    if name not in tensors or ids is None:
        raise ValueError(f"{path}: no vectors named {name!r}")
    want = [str(r.get("id", i)) for i, r in enumerate(records)]
    if ids[: len(want)] != want:
        raise ValueError(f"{path}: vectors {name!r} are not those of the given records (ids differ)")
    return tensors[name][: len(want)]


def vector_count(folder: Path, name: str) -> int:
    """How many records the stored ``name`` vectors cover (the first ones of their file)."""
    path = folder / IDS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {IDS_NAME}; run the lrhp stage first")
    return len(json.loads(path.read_text()).get(name, []))
