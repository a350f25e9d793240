"""Encoder layers: a small Conformer block and a pre-LN Transformer block.

All layers take ``(x, pad_mask)`` with ``pad_mask`` (B, T) True at padding, and keep each
utterance's valid frames independent of the rest of the batch (no BatchNorm, masked convs).
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.speech.models.attention import MultiHeadAttention


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ffn_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv over time, norm, SiLU, pointwise conv.

    LayerNorm replaces the Conformer's BatchNorm: batch statistics would make an utterance's
    output depend on its batch mates and their padding. Padded frames are zeroed before the
    depthwise conv so they never leak into valid frames.
    """

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        self.norm_in = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.norm_mid = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.act, self.drop = nn.SiLU(), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        x = x.masked_fill(pad_mask[..., None], 0.0)
        x = self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pointwise_out(self.act(self.norm_mid(x))))


class ConformerLayer(nn.Module):
    """FFN/2, MHSA, conv module, FFN/2, LayerNorm (Gulati et al. 2020), absolute positions."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, kernel: int, dropout: float):
        super().__init__()
        self.ffn1 = FeedForward(d_model, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, kernel, dropout)
        self.ffn2 = FeedForward(d_model, ffn_dim, dropout)
        self.final_norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, cross: torch.Tensor | None = None) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.drop(self.self_attn(self.attn_norm(x), key_padding_mask=pad_mask))
        x = x + self.conv(x, pad_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class TransformerLayer(nn.Module):
    """Pre-LN Transformer encoder layer, optionally with cross-layer attention.

    With ``cross=True`` an attention block (after self-attention) reads another layer's output,
    and in training the self-attention sublayer alone is skipped with probability
    ``self_attn_drop`` (one draw per batch), pushing the layer to use the cross-layer path.
    """

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, cross: bool = False,
                 self_attn_drop: float = 0.0):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.self_attn_drop = self_attn_drop if cross else 0.0
        if cross:
            self.cross_norm = nn.LayerNorm(d_model)
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.has_cross = cross
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, cross: torch.Tensor | None = None) -> torch.Tensor:
        skip = self.training and self.self_attn_drop > 0 and torch.rand(()).item() < self.self_attn_drop
        if not skip:
            x = x + self.drop(self.self_attn(self.attn_norm(x), key_padding_mask=pad_mask))
        if self.has_cross:
            x = x + self.drop(self.cross_attn(self.cross_norm(x), cross, key_padding_mask=pad_mask))
        return x + self.ffn(x)
