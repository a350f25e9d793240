"""Build, save and load the small Llama-style causal LMs the pipeline trains.

Models are built from a plain dict (no hub download) with vocabulary size and special
token ids taken from the tokenizer, so the two can never disagree. Checkpoints are HF
directories written with safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from pipelines.models.safe_weights import require_safetensors, writes_on_this_rank

# Architecture keys a config dict may set; everything tokenizer-derived is excluded.
ALLOWED_KEYS = frozenset(
    {
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "max_position_embeddings",
        "tie_word_embeddings",
        "rope_theta",
        "rms_norm_eps",
        "hidden_act",
        "initializer_range",
        "attention_dropout",
        "attention_bias",
        "mlp_bias",
        "head_dim",
    }
)
TOKENIZER_KEYS = frozenset({"vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"})


def _llama_config(cfg: dict, tokenizer) -> LlamaConfig:
    """Validate ``cfg`` and merge in tokenizer-derived fields."""
    for key in cfg:
        if key in TOKENIZER_KEYS:
            raise ValueError(f"config key {key!r} is derived from the tokenizer; remove it")
        if key not in ALLOWED_KEYS:
            raise ValueError(f"unknown model config key {key!r}; allowed: {sorted(ALLOWED_KEYS)}")
    kwargs = dict(cfg)
    rope_theta = kwargs.pop("rope_theta", None)
    if rope_theta is not None:
        # transformers >= 5 keeps rope settings in ``rope_parameters``.
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta)}
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; use load_tokenizer or set one")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )


def build_llama(cfg: dict, tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """Randomly initialise a float32 Llama; the init depends only on ``cfg`` and ``seed``.

    The global torch RNG is forked, so building a model does not perturb the caller's RNG.
    """
    config = _llama_config(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32)


def save_causal_lm(model, tokenizer, out_dir: str) -> None:
    """Write model (safetensors) and tokenizer into one HF checkpoint directory.

    Under several ranks only rank 0 writes (HF's `save_pretrained` skips the others itself); the
    other ranks get the empty folder (`writes_on_this_rank`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not writes_on_this_rank():
        return
    model.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    if not any(out.glob("*.safetensors")):
        raise RuntimeError(f"save_pretrained wrote no safetensors file into {out_dir!r}")


def load_causal_lm(path: str):
    """Load a local HF causal-LM checkpoint in float32 eval mode (safetensors only)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model checkpoint directory not found: {path!r}")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"{path!r} is not a HF checkpoint directory (needs config.json and *.safetensors)"
        )
    require_safetensors(p, "causal-LM checkpoint")
    model = AutoModelForCausalLM.from_pretrained(
        str(p), dtype=torch.float32, local_files_only=True, use_safetensors=True
    )
    return model.eval()


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (unique) parameters; tied embeddings are counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def causal_lm_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """The training loop's ``loss_fn`` for causal LMs: mean next-token NLL over labels != -100.

    ``batch`` is a dict with ``input_ids``, optional ``attention_mask`` and ``labels``
    (defaults to ``input_ids``), or a bare LongTensor of packed blocks.
    """
    if torch.is_tensor(batch):
        batch = {"input_ids": batch}
    labels = batch.get("labels", batch["input_ids"])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    n = int((targets != -100).sum())
    if n == 0:  # keep the graph connected so backward() still works
        return logits.sum() * 0.0, {"loss": 0.0, "target_tokens": 0.0}
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    return loss, {"loss": float(loss.detach()), "target_tokens": float(n)}
