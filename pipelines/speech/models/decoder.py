"""Causal Transformer decoder for the AR baseline, with incremental decoding.

What is cached during decoding: (1) each layer's cross-attention keys/values of the encoder memory,
projected once per utterance (``project_memory``) instead of at every step; (2) each layer's
self-attention keys/values of all earlier target positions (``caches``), so a step only runs the
newest token through the layers. Beam search reorders (2) with ``reorder_caches``; (1) is already
expanded per hypothesis and needs no reordering because beams never change sentence.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipelines.speech.models.attention import MultiHeadAttention
from pipelines.speech.models.conformer import FeedForward
from pipelines.speech.models.subsampling import SinusoidalPositions


class DecoderLayer(nn.Module):
    """Pre-LN: causal self-attention, attention to the encoder memory, FFN."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.mem_norm = nn.LayerNorm(d_model)
        self.mem_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory_kv, memory_pad_mask, cache=None):
        x = x + self.drop(self.self_attn(self.self_norm(x), causal=True, cache=cache))
        x = x + self.drop(self.mem_attn(self.mem_norm(x), key_padding_mask=memory_pad_mask, static_kv=memory_kv))
        return x + self.ffn(x)


class TransformerDecoder(nn.Module):
    def __init__(self, cfg: dict, vocab_size: int, pad_id: int):
        super().__init__()
        d = cfg["d_model"]
        self.embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=d**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.scale = math.sqrt(d)
        self.positions = SinusoidalPositions(d, cfg["max_target_positions"])
        self.drop = nn.Dropout(cfg["dropout"])
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg["n_heads"], cfg["ffn_dim"], cfg["dropout"]) for _ in range(cfg["decoder_layers"])
        )
        self.final_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, vocab_size, bias=False)
        if cfg["tie_embeddings"]:
            self.out_proj.weight = self.embed.weight

    def project_memory(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer cross-attention (k, v) of the encoder output, computed once per utterance."""
        return [layer.mem_attn.project_kv(memory) for layer in self.layers]

    def forward(self, tokens, memory_kv, memory_pad_mask, caches=None, offset: int = 0) -> torch.Tensor:
        """Logits (B, U, V) for ``tokens`` (B, U) at positions offset..offset+U-1.

        Training passes the whole shifted target (no caches); decoding passes one token per step
        with ``caches`` (one dict per layer, filled in place) and ``offset`` = step.
        """
        x = self.scale * self.embed(tokens) + self.positions(tokens.size(1), offset)
        x = self.drop(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, memory_kv[i], memory_pad_mask, None if caches is None else caches[i])
        return self.out_proj(self.final_norm(x))


def reorder_caches(caches: list[dict], index: torch.Tensor) -> None:
    """Select rows ``index`` of every self-attention cache (beam search survivors), in place."""
    for cache in caches:
        for key in cache:
            cache[key] = cache[key].index_select(0, index)
