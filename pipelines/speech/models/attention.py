"""Multi-head attention with the two things incremental decoding needs: a growing self-attention
key/value cache and key/value projections of a fixed memory computed once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``n_heads`` heads.

    ``key_padding_mask`` (B, S) is True at padded keys; ``causal`` masks future keys (only when
    queries and keys are the same sequence). ``cache`` (a dict, mutated) appends this call's
    keys/values to earlier ones; ``static_kv`` is a (k, v) pair from ``project_kv``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, Dh)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head keys and values of a memory, (B, H, S, Dh) each; reusable across steps."""
        return self._heads(self.k_proj(memory)), self._heads(self.v_proj(memory))

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: dict | None = None,
        static_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        q = self._heads(self.q_proj(query))
        k, v = static_kv if static_kv is not None else self.project_kv(query if memory is None else memory)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # True = attend
        if causal and q.size(2) > 1:
            t_q, t_k = q.size(2), k.size(2)
            future = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).triu(t_k - t_q + 1)
            mask = ~future if mask is None else mask & ~future
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))
