"""Build, save and load models: weights as safetensors, architecture as JSON (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
from torch import nn

from pipelines.speech.models.ar import ARST
from pipelines.speech.models.config import model_config
from pipelines.speech.models.nast import NAST

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = "speech-st-v1"
_CLASSES = {"nast": NAST, "ar": ARST}


def build_model(kind: str, cfg: dict | None, vocab_size: int, special_ids: dict) -> nn.Module:
    """A fresh ``NAST`` ("nast") or ``ARST`` ("ar"). ``cfg`` overrides the kind's defaults
    (``config.DEFAULTS``); ``special_ids`` needs ``pad``, ``bos``, ``eos`` (``blank`` must be 0)."""
    missing = {"pad", "bos", "eos"} - set(special_ids)
    if missing:
        raise ValueError(f"special_ids lacks {sorted(missing)}")
    if special_ids.get("blank", 0) != 0:
        raise ValueError("the CTC blank must be id 0")
    if any(not 0 < special_ids[k] < vocab_size for k in ("pad", "bos", "eos")):
        raise ValueError("pad/bos/eos must be ids in [1, vocab_size) (0 is the blank)")
    return _CLASSES[kind](model_config(kind, cfg), vocab_size, {**special_ids, "blank": 0})


def save_model(model: nn.Module, directory) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (tied weights stored once) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, "kind": model.kind, "cfg": model.cfg,
            "vocab_size": model.vocab_size, "special_ids": model.special_ids}
    safetensors.torch.save_model(model, str(directory / WEIGHTS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def load_model(directory, device: str = "cpu") -> nn.Module:
    """The model saved in ``directory``, in eval mode on ``device``."""
    directory = Path(directory)
    meta = json.loads((directory / CONFIG_NAME).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{directory}: unknown format {meta.get('format')!r}")
    model = build_model(meta["kind"], meta["cfg"], meta["vocab_size"], meta["special_ids"])
    safetensors.torch.load_model(model, str(directory / WEIGHTS_NAME), strict=True, device=device)
    return model.to(device).eval()
