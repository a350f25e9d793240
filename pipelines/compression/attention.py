"""The attention modules LiSA installs, and the bus that hands one layer's scores to the next.

`ScoreAttention` is an ordinary layer computed eagerly so it can publish its pre-softmax scores;
`LisaAttention` rebuilds a replaced layer's scores from the previous layer's (see `lisa` for the
design). Both run eager attention and share `EagerAttention`'s mask/softmax/value path.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.compression.families import AttentionGeometry, FamilyAdapter


class ScoreBus:
    """Carries one layer's pre-softmax scores to the next layer within a forward pass.

    ``take`` checks that the scores come from the layer right before, so a wiring mistake fails
    loudly instead of silently mixing layers. ``capture`` (a dict or None) records every eager
    layer's scores and probabilities, for analysis and attention distillation.
    """

    def __init__(self) -> None:
        self.layer: int | None = None
        self.scores: torch.Tensor | None = None
        self.capture: dict[int, dict[str, torch.Tensor]] | None = None

    def __deepcopy__(self, memo) -> "ScoreBus":
        return ScoreBus()  # transient: a copied model starts with an empty bus

    def publish(self, layer: int, scores: torch.Tensor) -> None:
        self.layer, self.scores = layer, scores

    def take(self, layer: int) -> torch.Tensor:
        if self.scores is None or self.layer != layer - 1:
            raise RuntimeError(f"LiSA layer {layer} expected scores from layer {layer - 1}, found layer {self.layer}")
        scores, self.layer, self.scores = self.scores, None, None
        return scores

    def record(self, layer: int, scores: torch.Tensor, probs: torch.Tensor) -> None:
        if self.capture is not None:
            self.capture[layer] = {"scores": scores, "probs": probs}

    def clear(self) -> None:
        self.layer = self.scores = None


def score_bus(model: nn.Module) -> ScoreBus:
    """The model's bus, created on first use."""
    bus = getattr(model, "_lisa_bus", None)
    if bus is None:
        bus = ScoreBus()
        model._lisa_bus = bus
    return bus


def masked_scores(scores: torch.Tensor, mask, causal: bool) -> torch.Tensor:
    """``scores`` (B, H, Tq, Tk) with whatever mask HF built for the configured backend applied:
    None (sdpa's "plain causal / nothing masked"), bool "may attend", or an additive float mask.
    The queries are the last Tq of Tk positions (true for prefill and for cached decoding)."""
    q_len, kv_len = scores.shape[-2:]
    if mask is None:
        if not causal:
            return scores
        queries = torch.arange(q_len, device=scores.device)[:, None] + (kv_len - q_len)
        mask = torch.arange(kv_len, device=scores.device)[None, :] <= queries
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores + mask.to(scores.dtype)


class HeadFFN(nn.Module):
    """Tiny MLP over the head axis, applied independently at every (query, key) position.

    Starts as an exact permutation: output head h = input head ``permutation[h]``.
    """

    BLOCK = 1 << 14  # (query, key) positions per block when no gradient is needed

    def __init__(self, num_heads: int, hidden: int, permutation: Sequence[int] | None = None, *,
                 generator: torch.Generator | None = None, dtype=None, device=None) -> None:
        super().__init__()
        if hidden < 2 * num_heads:
            raise ValueError(f"FFN hidden size must be >= 2 * heads = {2 * num_heads}, got {hidden}")
        kw = dict(dtype=dtype, device=device)
        self.w1 = nn.Parameter(torch.zeros(hidden, num_heads, **kw))
        self.b1 = nn.Parameter(torch.zeros(hidden, **kw))
        self.w2 = nn.Parameter(torch.zeros(num_heads, hidden, **kw))
        self.b2 = nn.Parameter(torch.zeros(num_heads, **kw))
        self.reset_to_permutation(range(num_heads) if permutation is None else permutation, generator)

    @torch.no_grad()
    def reset_to_permutation(self, permutation: Sequence[int], generator: torch.Generator | None = None) -> None:
        heads = self.b2.numel()
        perm = [int(p) for p in permutation]
        if sorted(perm) != list(range(heads)):
            raise ValueError(f"not a permutation of {heads} heads: {perm}")
        p = torch.eye(heads, dtype=self.w1.dtype, device=self.w1.device)[perm]
        eye = torch.eye(heads, dtype=self.w1.dtype, device=self.w1.device)
        self.w1.zero_(), self.b1.zero_(), self.w2.zero_(), self.b2.zero_()
        self.w1[:heads], self.w1[heads : 2 * heads] = p, -p
        self.w2[:, :heads], self.w2[:, heads : 2 * heads] = eye, -eye
        extra = self.w1.shape[0] - 2 * heads  # spare units: random input weights, zero output weights
        if extra:
            noise = torch.randn(extra, heads, generator=generator) / math.sqrt(heads)
            self.w1[2 * heads :] = noise.to(self.w1)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        batch, heads, q_len, k_len = scores.shape
        flat = scores.reshape(batch, heads, q_len * k_len)
        b1, b2 = self.b1[:, None], self.b2[:, None]
        if torch.is_grad_enabled() and (scores.requires_grad or self.w1.requires_grad):
            out = torch.stack([torch.addmm(b2, self.w2, torch.addmm(b1, self.w1, f).relu_()) for f in flat])
        else:  # inference: blocks of positions, so the hidden activations stay in cache
            out = torch.empty_like(flat)
            for b in range(batch):
                for start in range(0, flat.shape[-1], self.BLOCK):
                    part = slice(start, start + self.BLOCK)
                    hidden = torch.addmm(b1, self.w1, flat[b, :, part]).relu_()
                    torch.addmm(b2, self.w2, hidden, out=out[b, :, part])
        return out.view(batch, heads, q_len, k_len)


def _dropout_p(original: nn.Module) -> float:
    if isinstance(getattr(original, "dropout", None), nn.Dropout):
        return float(original.dropout.p)
    return float(getattr(original, "attention_dropout", getattr(original, "dropout_p", 0.0)))


class EagerAttention(nn.Module):
    """Shared eager tail of both swapped modules: mask, softmax, dropout, P @ V, output projection.

    Adopts (does not copy) the original's V and O projections under their original names.
    """

    def __init__(self, original: nn.Module, adapter: FamilyAdapter, geometry: AttentionGeometry,
                 layer_idx: int, bus: ScoreBus) -> None:
        super().__init__()
        self.adapter, self.geometry, self.layer_idx, self.bus = adapter, geometry, layer_idx, bus
        self.is_causal = geometry.causal
        self.scaling = adapter.scaling(original)
        self.dropout_p = _dropout_p(original)
        names = [adapter.v_name] + ([adapter.o_name] if adapter.o_name else [])
        for name in names:
            setattr(self, name, getattr(original, name))

    def _heads(self, projected: torch.Tensor, size: int) -> torch.Tensor:
        batch, length, _ = projected.shape
        return projected.view(batch, length, -1, size).transpose(1, 2)

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        return self._heads(getattr(self, self.adapter.v_name)(x), self.geometry.head_dim)

    @staticmethod
    def _cache(cache, past_key_values):
        """The layer's self-attention cache, or None. Transformers >= 5.24 passes it as ``cache``,
        earlier versions as ``past_key_values``; both are accepted because ``**kwargs`` would
        silently swallow the other name and the layer would skip its cache update."""
        cache = past_key_values if cache is None else cache
        return getattr(cache, "self_attention_cache", cache)

    def _expand_kv(self, t: torch.Tensor) -> torch.Tensor:
        groups = self.geometry.kv_groups
        return t if groups == 1 else t.repeat_interleave(groups, dim=1)

    def _attend(self, scores: torch.Tensor, values: torch.Tensor, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, q_len, _ = scores.shape
        logits = masked_scores(scores, attention_mask, self.is_causal)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32).to(values.dtype)
        self.bus.record(self.layer_idx, scores, probs)
        weights = F.dropout(probs, p=self.dropout_p, training=self.training)
        out = torch.matmul(weights, self._expand_kv(values)).transpose(1, 2).reshape(batch, q_len, -1)
        if self.adapter.o_name:
            out = getattr(self, self.adapter.o_name)(out)
        return out, probs


class ScoreAttention(EagerAttention):
    """The original attention computed eagerly, publishing its pre-mask scores for layer l+1."""

    def __init__(self, original, adapter, geometry, layer_idx, bus) -> None:
        super().__init__(original, adapter, geometry, layer_idx, bus)
        for name in (adapter.q_name, adapter.k_name):
            setattr(self, name, getattr(original, name))
        self.train(original.training)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None, *,
                cache=None, **kwargs):
        cache = self._cache(cache, past_key_values)
        hd = self.geometry.head_dim
        q = self._heads(getattr(self, self.adapter.q_name)(hidden_states), hd)
        k = self._heads(getattr(self, self.adapter.k_name)(hidden_states), hd)
        v = self._values(hidden_states)
        q, k = self.adapter.position_encode(q, k, position_embeddings)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        scores = torch.matmul(q * self.scaling, self._expand_kv(k).transpose(2, 3))
        self.bus.publish(self.layer_idx, scores)
        return self._attend(scores, v, attention_mask)


class LisaAttention(EagerAttention):
    """A replaced layer: scores from FFN_heads(S_{l-1}) and/or a low-rank term; no W_Q, W_K."""

    def __init__(self, original, adapter, geometry, layer_idx, bus, *, mode: str, rank: int, ffn_hidden: int,
                 permutation: Sequence[int] | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__(original, adapter, geometry, layer_idx, bus)
        self.mode, self.rank = mode, rank
        self.publish = False  # set by `apply_lisa` when layer l+1 reads these scores
        ref = getattr(original, adapter.v_name).weight
        kw = dict(dtype=ref.dtype, device=ref.device)
        heads, d = geometry.num_heads, geometry.hidden_size
        if mode in ("full", "align"):
            self.lisa_ffn = HeadFFN(heads, ffn_hidden, permutation, generator=generator, **kw)
        if mode in ("full", "lowrank"):
            if mode == "lowrank":
                a_q, a_k = _bilinear_factors(original, adapter, geometry, rank)
            else:
                a_q = torch.randn(heads * rank, d, generator=generator) / math.sqrt(d)
                a_k = torch.zeros(heads * rank, d)
            self.lisa_q = nn.Parameter(a_q.to(**kw))
            self.lisa_k = nn.Parameter(a_k.to(**kw))
        self.train(original.training)  # a new module would otherwise start in training mode

    @property
    def needs_previous(self) -> bool:
        return self.mode != "lowrank"

    @property
    def has_lowrank(self) -> bool:
        return self.mode in ("full", "lowrank")

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None, *,
                cache=None, **kwargs):
        cache = self._cache(cache, past_key_values)
        batch, length, _ = hidden_states.shape
        v = self._values(hidden_states)
        if self.has_lowrank:  # 1/sqrt(r) folded into the queries
            q_low = self._heads(F.linear(hidden_states, self.lisa_q), self.rank) / math.sqrt(self.rank)
            k_low = self._heads(F.linear(hidden_states, self.lisa_k), self.rank)
        else:  # placeholder keeps the cache's sequence length right
            k_low = hidden_states.new_zeros(batch, 1, length, 1)
        if cache is not None:
            k_low, v = cache.update(k_low, v, self.layer_idx)
        scores = None
        if self.needs_previous:
            scores = self.bus.take(self.layer_idx)
            if self.mode != "share":
                scores = self.lisa_ffn(scores)
        if self.has_lowrank:
            low_keys = k_low.transpose(2, 3)
            if scores is None:
                scores = torch.matmul(q_low, low_keys)
            else:  # scores + q_low @ low_keys in one fused op
                heads, kv_len = scores.shape[1], low_keys.shape[-1]
                scores = torch.baddbmm(scores.reshape(batch * heads, -1, kv_len),
                                       q_low.reshape(batch * heads, -1, self.rank),
                                       low_keys.reshape(batch * heads, self.rank, kv_len)).view(batch, heads, -1, kv_len)
        if self.publish:
            self.bus.publish(self.layer_idx, scores)
        return self._attend(scores, v, attention_mask)


@torch.no_grad()
def _bilinear_factors(original, adapter, geometry, rank) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, the best rank-r factors (A_q, A_k) of W_Q^h W_K^h^T * scaling, as (H*r, d) weights.

    Uses QR of the thin factors so only a (head_dim x head_dim) SVD is needed per head.
    """
    hd, heads = geometry.head_dim, geometry.num_heads
    wq = getattr(original, adapter.q_name).weight.double()
    wk = getattr(original, adapter.k_name).weight.double()
    scale, keep = adapter.scaling(original), min(rank, hd)
    a_q = torch.zeros(heads * rank, geometry.hidden_size, dtype=torch.float64)
    a_k = torch.zeros_like(a_q)
    for h in range(heads):
        kh = h // geometry.kv_groups
        qa, ra = torch.linalg.qr(wq[h * hd : (h + 1) * hd].T)
        qb, rb = torch.linalg.qr(wk[kh * hd : (kh + 1) * hd].T)
        u, s, vh = torch.linalg.svd(ra @ rb.T * scale)
        root = s[:keep].sqrt() * rank**0.25  # the forward divides by sqrt(rank)
        a_q[h * rank : h * rank + keep] = (qa @ u[:, :keep] * root).T
        a_k[h * rank : h * rank + keep] = (qb @ vh[:keep].T * root).T
    return a_q.float(), a_k.float()
