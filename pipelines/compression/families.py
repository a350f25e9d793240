"""Family adapters: where a model keeps its layers and attention, and what its projections are called.

LiSA swaps attention modules in place and recomputes attention eagerly, so for each supported model
family it needs to know: the list of transformer layers, the self-attention module inside a layer,
the names of the Q/K/V/O projections (kept under the same names, so state-dict keys do not change),
the attention geometry (heads, KV heads, head size, causal or not) and how positions enter Q/K.
Everything family-specific lives here; `lisa.py` and `analysis.py` only talk to an adapter.

Supported: HF Llama (``LlamaModel``/``LlamaForCausalLM``; Q/K get RoPE, GQA allowed, causal) and
HF BERT (``BertModel``/``BertForMaskedLM``/...; absolute positions only, bidirectional unless the
config is a decoder). ``BertSelfAttention`` has no output projection (``BertSelfOutput`` applies it
outside the swapped module), so the BERT adapter has ``o_name = None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AttentionGeometry:
    """Shape facts of one model's self-attention, identical for every layer."""

    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    qk_bias: bool
    causal: bool

    @property
    def kv_groups(self) -> int:
        return self.num_heads // self.num_kv_heads

    @classmethod
    def of(cls, config, *, qk_bias: bool, causal: bool, num_kv_heads: int | None = None,
           head_dim: int | None = None) -> "AttentionGeometry":
        """From an HF config; key/value heads default to the query heads, head size to hidden / heads."""
        heads = config.num_attention_heads
        return cls(hidden_size=config.hidden_size, num_heads=heads, num_kv_heads=num_kv_heads or heads,
                   head_dim=head_dim or config.hidden_size // heads, qk_bias=qk_bias, causal=causal)


class FamilyAdapter:
    """Base class; one subclass per family. Stateless, so one shared instance per family suffices."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    class_prefix: str = ""  # HF model classes of the family start with this (used when loading)
    q_name = k_name = v_name = ""
    o_name: str | None = None

    def layers(self, model: nn.Module) -> nn.ModuleList:
        raise NotImplementedError

    def attention(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def set_attention(self, layer: nn.Module, module: nn.Module) -> None:
        raise NotImplementedError

    def geometry(self, model: nn.Module) -> AttentionGeometry:
        raise NotImplementedError

    def scaling(self, attention: nn.Module) -> float:
        """Factor on Q K^T: part of the pre-softmax scores LiSA passes between layers."""
        return float(attention.scaling)

    def position_encode(self, q: torch.Tensor, k: torch.Tensor, position_embeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the family's positional transform to Q and K (B, heads, T, head_dim)."""
        return q, k

    def check(self, model: nn.Module) -> None:
        """Raise ValueError for variants of the family that LiSA does not handle."""


class LlamaAdapter(FamilyAdapter):
    name = "llama"
    model_types = ("llama",)
    class_prefix = "Llama"
    q_name, k_name, v_name, o_name = "q_proj", "k_proj", "v_proj", "o_proj"

    def layers(self, model):
        return model.base_model.layers

    def attention(self, layer):
        return layer.self_attn

    def set_attention(self, layer, module):
        layer.self_attn = module

    def geometry(self, model):
        c = model.config
        return AttentionGeometry.of(c, num_kv_heads=c.num_key_value_heads, head_dim=getattr(c, "head_dim", None),
                                    qk_bias=bool(c.attention_bias), causal=True)

    def position_encode(self, q, k, position_embeddings):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = position_embeddings
        return apply_rotary_pos_emb(q, k, cos, sin)


class BertAdapter(FamilyAdapter):
    name = "bert"
    model_types = ("bert",)
    class_prefix = "Bert"
    q_name, k_name, v_name, o_name = "query", "key", "value", None

    def layers(self, model):
        return model.base_model.encoder.layer

    def attention(self, layer):
        return layer.attention.self

    def set_attention(self, layer, module):
        layer.attention.self = module

    def geometry(self, model):
        return AttentionGeometry.of(model.config, qk_bias=True, causal=bool(model.config.is_decoder))

    def check(self, model):
        kind = getattr(model.config, "position_embedding_type", "absolute")
        if kind not in (None, "absolute"):
            raise ValueError(f"LiSA supports BERT with absolute position embeddings only, got {kind!r}")


ADAPTERS: dict[str, FamilyAdapter] = {a.name: a for a in (LlamaAdapter(), BertAdapter())}


def family_of(model: nn.Module) -> FamilyAdapter:
    """The adapter for ``model``, by its config's ``model_type``; ValueError naming the class otherwise."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in ADAPTERS.values():
        if model_type in adapter.model_types:
            adapter.check(model)
            return adapter
    supported = ", ".join(sorted(ADAPTERS))
    raise ValueError(
        f"LiSA does not support {type(model).__name__} (model_type={model_type!r}); supported families: {supported}"
    )


def adapter_by_name(name: str) -> FamilyAdapter:
    if name not in ADAPTERS:
        raise ValueError(f"unknown LiSA family {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[name]
