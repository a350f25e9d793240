"""Save a LiSA-compressed model and load it back with one call: ``load_lisa_model(path)``.

Layout of ``path`` (no pickle anywhere, safetensors + JSON only):

* the base checkpoint, written by HF ``save_pretrained`` (config.json, model.safetensors or shards)
  from the model's state dict *without* LiSA parameters; the dropped W_Q/W_K of replaced layers are
  simply absent. Saved with ``save_original_format=False`` so keys equal the state-dict keys.
* ``lisa_config.json``: format, family, model class, layers, mode, rank, ffn_hidden, attention
  implementation.
* ``lisa.safetensors``: the LiSA parameters under their full state-dict names.

Why loading does not complain about the missing W_Q/W_K: ``load_lisa_model`` does not go through
``from_pretrained``. It builds the model class from config.json (random init under a forked RNG,
so the caller's RNG state is untouched), calls `apply_lisa` with the saved settings (which removes
the Q/K projections of the replaced layers from the module tree), then loads base + LiSA tensors
with ``load_state_dict``: nothing may be unexpected and only tied aliases (e.g. a tied lm_head)
may be missing, otherwise it raises. The result is in eval mode and reproduces the saved model's
outputs exactly. Loading the directory with plain ``from_pretrained`` gives a model with randomly
initialised Q/K in the replaced layers; do not do that.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig

from pipelines.compression.families import adapter_by_name, family_of
from pipelines.compression.lisa import apply_lisa, is_lisa_param

CONFIG_NAME = "lisa_config.json"
WEIGHTS_NAME = "lisa.safetensors"
FORMAT_VERSION = "lisa-v1"


def save_lisa_model(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (which must have LiSA applied) to ``path``; returns the path."""
    state = getattr(model, "lisa_state", None)
    if state is None:
        raise ValueError("model has no LiSA layers; call apply_lisa first")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    full = model.state_dict()
    lisa = {k: v.detach().contiguous() for k, v in full.items() if is_lisa_param(k)}
    base = {k: v for k, v in full.items() if not is_lisa_param(k)}
    model.save_pretrained(path, state_dict=base, save_original_format=False)
    save_file(lisa, str(path / WEIGHTS_NAME), metadata={"format": FORMAT_VERSION})
    meta = {"format": FORMAT_VERSION, "model_class": type(model).__name__,
            "attn_implementation": model.config._attn_implementation, **state.to_dict()}
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def _model_class(meta: dict):
    adapter = adapter_by_name(meta["family"])
    name = meta["model_class"]
    cls = getattr(transformers, name, None) if name.startswith(adapter.class_prefix) else None
    if cls is None:
        raise ValueError(f"{name!r} is not a transformers {adapter.name} model class")
    return cls


def _base_tensors(path: Path) -> dict[str, torch.Tensor]:
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(load_file(str(path / name)))
    return tensors


def load_lisa_model(path: str | Path) -> nn.Module:
    """The model saved by `save_lisa_model` at ``path``, LiSA applied, weights loaded, eval mode."""
    path = Path(path)
    meta = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path / CONFIG_NAME}: unknown format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    config = AutoConfig.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        model = _model_class(meta)(config)
    if meta.get("attn_implementation"):
        model.set_attn_implementation(meta["attn_implementation"])
    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    if family_of(model).name != meta["family"]:
        raise ValueError(f"{path}: config family does not match lisa_config.json ({meta['family']})")
    apply_lisa(model, meta["layers"], rank=meta["rank"], mode=meta["mode"], ffn_hidden=meta["ffn_hidden"])
    tensors = _base_tensors(path)
    tensors.update(load_file(str(path / WEIGHTS_NAME)))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    untied = [k for k in missing if not _is_tied_alias(model, k, tensors)]
    if unexpected or untied:
        raise ValueError(f"{path}: checkpoint does not match the LiSA model; missing {untied}, unexpected {unexpected}")
    return model.eval()


def _is_tied_alias(model: nn.Module, key: str, loaded: dict) -> bool:
    """True if ``key`` shares storage with a tensor of the model that was loaded under another name."""
    state = model.state_dict(keep_vars=True)
    target = state[key]
    return any(name in loaded and name != key and value is target for name, value in state.items())
