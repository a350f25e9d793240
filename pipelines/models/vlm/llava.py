"""The vision-language model: an HF LLaVA (CLIP vision tower, projector, Llama LM) built from a config.

Built from a plain dict, so no download is needed; a real LLaVA checkpoint directory (or a hub
name where there is a network) loads through the same `load_vlm`. Checkpoints are safetensors.
Images enter as `(image_size / patch_size) ** 2` copies of the `<image>` token (the "default"
feature strategy drops CLS), expanded here rather than by a processor so token accounting is exact.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
)

from pipelines.models.causal_lm import ALLOWED_KEYS as LLAMA_KEYS
from pipelines.models.safe_weights import require_safetensors, writes_on_this_rank
from pipelines.models.tokenizer import train_bpe_tokenizer

IMAGE_TOKEN = "<image>"
# CLIP's published normalisation; real LLaVA checkpoints expect it, and the tiny model uses it too.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VISION_KEYS = frozenset({"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                         "image_size", "patch_size", "num_channels", "hidden_act", "layer_norm_eps"})


def train_vlm_tokenizer(texts, vocab_size: int):
    """Byte-level BPE on the branch's texts plus one special `<image>` token (id = BPE vocab size)."""
    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


def image_token_id(tokenizer) -> int:
    tid = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no {IMAGE_TOKEN!r} token; build it with train_vlm_tokenizer")
    return int(tid)


def _checked(cfg: dict, allowed: frozenset, where: str) -> dict:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"unknown {where} config keys {unknown}; allowed: {sorted(allowed)}")
    return dict(cfg)


def build_llava(cfg: dict, tokenizer, seed: int = 0) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA from `{"vision": {...}, "text": {...}}`; init depends on cfg and seed only."""
    for key in ("vision", "text"):
        if key not in cfg:
            raise ValueError(f"model config needs a {key!r} block")
    vision = CLIPVisionConfig(**_checked(cfg["vision"], VISION_KEYS, "vision"))
    text = _checked(cfg["text"], LLAMA_KEYS, "text")
    rope_theta = text.pop("rope_theta", None)
    if rope_theta is not None:
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta)}
    text_config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text)
    grid = int(vision.image_size) // int(vision.patch_size)
    config = LlavaConfig(vision_config=vision, text_config=text_config, image_token_index=image_token_id(tokenizer),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu", image_seq_length=grid * grid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    return model.to(torch.float32)


def n_image_tokens(model) -> int:
    """Image tokens per image under the "default" strategy (patch grid; CLS dropped)."""
    vc = model.config.vision_config
    grid = int(vc.image_size) // int(vc.patch_size)
    extra = 1 if model.config.vision_feature_select_strategy == "full" else 0
    return grid * grid + extra


def image_size(model) -> int:
    return int(model.config.vision_config.image_size)


def checkpoint_image_size(model_dir: Path) -> int:
    """The input resolution of a saved LLaVA, read from its config.json (no model load)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return int(cfg["vision_config"]["image_size"])


def hidden_states(vlm, input_ids, attention_mask, pixel_values) -> torch.Tensor:
    """Final hidden states `[n, L, d]` of the LLaVA base model (no vocabulary projection)."""
    out = vlm.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, use_cache=False)
    return out.last_hidden_state


def save_vlm(model, tokenizer, out_dir: Path) -> None:
    """Model and tokenizer as one HF folder; only rank 0 writes under several ranks (as `save_causal_lm`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not writes_on_this_rank():
        return
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if not any(out.glob("*.safetensors")):
        raise RuntimeError(f"save_pretrained wrote no safetensors file into {out}")


def load_vlm(path_or_name: str):
    """(model, tokenizer) from a local LLaVA checkpoint directory, or a hub name with a network.

    Safetensors only. The tokenizer must know `<image>` (real LLaVA-1.5 checkpoints do).
    """
    p = Path(path_or_name)
    local = p.is_dir()
    if local and not (p / "config.json").is_file():
        raise FileNotFoundError(f"{path_or_name!r} has no config.json: not a HF LLaVA checkpoint directory")
    if local:
        require_safetensors(p, "LLaVA checkpoint")
    if not local and (p.is_absolute() or str(path_or_name).startswith(".")):
        raise FileNotFoundError(f"LLaVA checkpoint directory not found: {path_or_name!r}")
    model = LlavaForConditionalGeneration.from_pretrained(str(path_or_name), dtype=torch.float32,
                                                          local_files_only=local, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_name), local_files_only=local)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_id = getattr(model.config, "image_token_id", getattr(model.config, "image_token_index", None))
    if image_token_id(tokenizer) != model_id:
        raise ValueError(f"{path_or_name}: tokenizer's {IMAGE_TOKEN!r} is id {image_token_id(tokenizer)} but the model "
                         f"expects image token id {model_id}")
    return model.eval(), tokenizer


def freeze_vision_tower(model) -> int:
    """Freeze the CLIP tower (RoVRM trains projector + LM); returns the number of frozen parameters."""
    frozen = 0
    for param in model.model.vision_tower.parameters():
        param.requires_grad_(False)
        frozen += param.numel()
    return frozen


def pixel_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 `[n, H, W, 3]` -> CLIP-normalised float `[n, 3, H, W]`."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [n, H, W, 3], got shape {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
