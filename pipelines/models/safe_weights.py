"""Weights from a user-supplied checkpoint folder are read from safetensors only.

`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt` and `.pkl` files are pickles: loading one runs
whatever code it holds, so a folder that has only those is refused with a message saying how to
convert it, instead of being unpickled (or failing deep inside transformers with an OSError).
"""
from __future__ import annotations

from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class PickleCheckpointError(ValueError):
    """A checkpoint folder whose weights exist only in a pickle-based format."""


def require_safetensors(folder: str | Path, what: str = "checkpoint") -> list[Path]:
    """The folder's *.safetensors files; PickleCheckpointError or FileNotFoundError when there are none."""
    folder = Path(folder)
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        return shards
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise PickleCheckpointError(
            f"{folder}: {what} weights are only in pickle format ({', '.join(pickles)}); alignflow loads "
            "safetensors only and never unpickles a user-supplied file. Convert it once where you trust it "
            "(e.g. `AutoModel.from_pretrained(folder).save_pretrained(folder)` writes model.safetensors)")
    raise FileNotFoundError(f"{folder}: no *.safetensors weights in this {what} folder")


def writes_on_this_rank() -> bool:
    """Whether HF `save_pretrained` writes model files in this process: not on ranks > 0 of a process
    group (it skips them itself). Our save helpers then write nothing there: those ranks' stage
    outputs are thrown away, and a half-written folder (tokenizer but no weights) helps no one."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
