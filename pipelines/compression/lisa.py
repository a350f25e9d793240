"""LiSA: a lightweight substitute for self-attention (arXiv 2408.01890), as designed here.

Why: adjacent layers' attention maps are similar up to a reordering of heads, so a layer can
rebuild its scores from the previous layer's instead of computing Q and K. In a replaced layer l
W_Q and W_K are dropped and the pre-softmax scores are

    S_l = FFN_heads(S_{l-1}) + (X A_q)(X A_k)^T / sqrt(r)

Design decisions (the paper's internals are not available to us; these are ours):

* Scores are *pre-mask*: S = Q K^T * scaling (scaling = 1/sqrt(head_dim)), before the causal /
  padding mask is added. FFN_heads mixes heads at a fixed (query i, key j), so a masked entry never
  leaks into a visible one; the mask and softmax are applied afterwards in every layer. S_{l-1} is
  whatever layer l-1 computed, so replaced layers chain (S_{l-1} may itself be a LiSA score).
* FFN_heads is an H -> hidden -> H ReLU MLP over the head axis (default hidden = 2H). It is
  initialised to an exact head permutation P (identity unless `permutations` gives one, e.g. from
  `analysis.head_permutations`): w1 = [P; -P], w2 = [I, -I], zero biases, and
  relu(Ps) - relu(-Ps) = Ps holds bit for bit. Output head h starts as input head perm[h].
  Units beyond 2H get random input and zero output weights, so the start stays exact.
* A_q, A_k: one rank-r factor pair *per head*, stored as (H*r, d_model) weights; the default
  r = max(1, round(head_dim / 6)). The low-rank term skips RoPE (it is position free): in "full"
  mode positions reach S_l through S_{l-1}, which carries RoPE; in the "lowrank" ablation a Llama
  layer sees positions only through the causal mask. Init: "full" uses A_q ~ N(0, 1/d), A_k = 0 (the
  term starts at exactly 0 but gets gradients, as in LoRA); "lowrank" starts from the best rank-r
  approximation of the original per-head bilinear form W_Q^h W_K^h^T * scaling (biases ignored).
* W_V and W_O are kept (frozen). Modes (the ablations): "full" (FFN + low-rank), "align" (FFN
  only), "lowrank" (low-rank only, no S_{l-1}), "share" (S_l = S_{l-1}, no parameters).
* KV cache (HF DynamicCache): a replaced layer stores its low-rank keys X A_k, (B, H, T, r), in its
  layer's key slot and V in the value slot; modes without a low-rank term store a (B, 1, T, 1) zero
  placeholder so the cache length bookkeeping still works. During decoding layer l-1 hands over
  only the new query rows of its scores (against all cached keys), which is all the per-position
  FFN needs.
* Layer l-1, if it is an ordinary layer, is swapped for `ScoreAttention`: the same Q/K/V/O weights
  (same parameter names, so state-dict keys are unchanged) computed eagerly so that its scores can be
  published. Scores travel through a per-model `ScoreBus` (plain attribute, not state).
* Layer 0 is never replaced (it has no predecessor). After `apply_lisa` only LiSA parameters
  (names containing `.lisa_`) have requires_grad.

Limits: LiSA layers and their sources run eager attention (the full (B, H, Tq, Tk) score tensor
is materialised; no flash/sdpa kernel), so long prefills cost memory and time; gradient
checkpointing is not supported (a recomputed layer would find the bus already consumed).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.compression.families import AttentionGeometry, FamilyAdapter, family_of

MODES = ("full", "share", "align", "lowrank")


def default_rank(geometry: AttentionGeometry) -> int:
    """Per-head rank of A_q/A_k: about head_dim / 6, so Q/K parameters shrink about 6x (MHA)."""
    return max(1, round(geometry.head_dim / 6))


@dataclass
class LisaState:
    """What `apply_lisa` did to a model; stored on it as ``model.lisa_state`` and in lisa_config.json."""

    family: str
    layers: list[int]
    mode: str
    rank: int
    ffn_hidden: int

    def to_dict(self) -> dict:
        return asdict(self)


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


class _EagerAttention(nn.Module):
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
    def _cache(past_key_values):
        return getattr(past_key_values, "self_attention_cache", past_key_values)

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


class ScoreAttention(_EagerAttention):
    """The original attention computed eagerly, publishing its pre-mask scores for layer l+1."""

    def __init__(self, original, adapter, geometry, layer_idx, bus) -> None:
        super().__init__(original, adapter, geometry, layer_idx, bus)
        for name in (adapter.q_name, adapter.k_name):
            setattr(self, name, getattr(original, name))
        self.train(original.training)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None, **kwargs):
        hd = self.geometry.head_dim
        q = self._heads(getattr(self, self.adapter.q_name)(hidden_states), hd)
        k = self._heads(getattr(self, self.adapter.k_name)(hidden_states), hd)
        v = self._values(hidden_states)
        q, k = self.adapter.position_encode(q, k, position_embeddings)
        if past_key_values is not None:
            k, v = self._cache(past_key_values).update(k, v, self.layer_idx)
        scores = torch.matmul(q * self.scaling, self._expand_kv(k).transpose(2, 3))
        self.bus.publish(self.layer_idx, scores)
        return self._attend(scores, v, attention_mask)


class LisaAttention(_EagerAttention):
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

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, position_embeddings=None, **kwargs):
        batch, length, _ = hidden_states.shape
        v = self._values(hidden_states)
        if self.has_lowrank:  # 1/sqrt(r) folded into the queries
            q_low = self._heads(F.linear(hidden_states, self.lisa_q), self.rank) / math.sqrt(self.rank)
            k_low = self._heads(F.linear(hidden_states, self.lisa_k), self.rank)
        else:  # placeholder keeps the cache's sequence length right
            k_low = hidden_states.new_zeros(batch, 1, length, 1)
        if past_key_values is not None:
            k_low, v = self._cache(past_key_values).update(k_low, v, self.layer_idx)
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


def is_lisa_param(name: str) -> bool:
    return ".lisa_" in "." + name


def lisa_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if is_lisa_param(n)]


def lisa_parameter_count(model: nn.Module) -> int:
    """Number of LiSA parameters (FFN_heads + A_q + A_k over all replaced layers)."""
    return sum(p.numel() for _, p in lisa_parameters(model))


def _wire(model: nn.Module, adapter: FamilyAdapter, geometry: AttentionGeometry, bus: ScoreBus) -> None:
    """Make every layer that feeds a LiSA layer publish its scores."""
    blocks = adapter.layers(model)
    for idx in range(1, len(blocks)):
        attn = adapter.attention(blocks[idx])
        if not (isinstance(attn, LisaAttention) and attn.needs_previous):
            continue
        prev = adapter.attention(blocks[idx - 1])
        if isinstance(prev, LisaAttention):
            prev.publish = True
        elif not isinstance(prev, ScoreAttention):
            adapter.set_attention(blocks[idx - 1], ScoreAttention(prev, adapter, geometry, idx - 1, bus))


def apply_lisa(model: nn.Module, layers: Sequence[int], rank: int | None = None, mode: str = "full", *,
               ffn_hidden: int | None = None, permutations: Mapping[int, Sequence[int]] | None = None,
               seed: int = 0) -> nn.Module:
    """Replace the attention of ``layers`` with LiSA, in place; returns ``model``.

    rank: per-head rank r of A_q/A_k (default `default_rank`). ffn_hidden: FFN_heads width (default
    2H). permutations: {layer: perm} so FFN_heads starts as S_l[h] = S_{l-1}[perm[h]] (identity
    otherwise). seed: LiSA init uses its own generator, so the global RNG is untouched. May be
    called again on a LiSA model to add layers (same mode/rank/ffn_hidden). Freezes everything
    except LiSA parameters.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    adapter = family_of(model)
    geometry, blocks = adapter.geometry(model), adapter.layers(model)
    new = sorted({int(i) for i in layers})
    bad = [i for i in new if not 1 <= i < len(blocks)]
    if bad:
        raise ValueError(f"layers must be in 1..{len(blocks) - 1} (layer 0 has no predecessor), got {bad}")
    rank = int(rank or default_rank(geometry))
    ffn_hidden = int(ffn_hidden or 2 * geometry.num_heads)
    state: LisaState | None = getattr(model, "lisa_state", None)
    if state is not None:
        if (state.mode, state.rank, state.ffn_hidden) != (mode, rank, ffn_hidden):
            raise ValueError(f"model already has LiSA with mode={state.mode}, rank={state.rank}, "
                             f"ffn_hidden={state.ffn_hidden}; got mode={mode}, rank={rank}, ffn_hidden={ffn_hidden}")
        again = sorted(set(new) & set(state.layers))
        if again:
            raise ValueError(f"layers {again} already use LiSA")
    bus, generator = score_bus(model), torch.Generator().manual_seed(seed)
    permutations = permutations or {}
    for idx in new:
        original = adapter.attention(blocks[idx])
        adapter.set_attention(blocks[idx], LisaAttention(
            original, adapter, geometry, idx, bus, mode=mode, rank=rank, ffn_hidden=ffn_hidden,
            permutation=permutations.get(idx), generator=generator))
    _wire(model, adapter, geometry, bus)
    for name, param in model.named_parameters():
        param.requires_grad_(is_lisa_param(name))
    previous = state.layers if state else []
    model.lisa_state = LisaState(adapter.name, sorted(set(previous) | set(new)), mode, rank, ffn_hidden)
    return model


def qk_costs(geometry: AttentionGeometry, mode: str, rank: int, ffn_hidden: int, context_len: int) -> dict:
    """Per replaced layer: Q/K parameters and Q/K FLOPs per token (multiply-add = 2 FLOPs) for the
    original attention and for LiSA, with ``context_len`` keys attended by the token.

    Original: Q and K projections + Q K^T. LiSA: A_q/A_k projections + low-rank scores (if any) +
    FFN_heads at each of the ``context_len`` positions (if any). Softmax, P V and W_O are the same
    in both and are left out; bias adds and ReLU are left out of the FLOPs.
    """
    g, t = geometry, context_len
    qk_width = (g.num_heads + g.num_kv_heads) * g.head_dim
    original_params = g.hidden_size * qk_width + (qk_width if g.qk_bias else 0)
    original_flops = 2 * g.hidden_size * qk_width + 2 * g.num_heads * g.head_dim * t
    params = flops = 0
    if mode in ("full", "lowrank"):
        params += 2 * g.num_heads * rank * g.hidden_size
        flops += 2 * g.hidden_size * 2 * g.num_heads * rank + 2 * g.num_heads * rank * t
    if mode in ("full", "align"):
        params += 2 * g.num_heads * ffn_hidden + ffn_hidden + g.num_heads
        flops += t * 4 * g.num_heads * ffn_hidden
    return {"original_params": original_params, "lisa_params": params,
            "original_flops": original_flops, "lisa_flops": flops}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def lisa_report(model: nn.Module, context_len: int = 512) -> dict:
    """Size and cost of the LiSA replacement (ratios are original / LiSA, >1 means smaller/cheaper).

    Keys: layers, mode, rank, ffn_hidden, lisa_parameter_count, trainable_parameters,
    total_parameters, trainable_fraction, qk_params_original/_lisa, qk_compression_ratio,
    qk_flops_per_token_original/_lisa, qk_flop_ratio (at ``context_len`` keys), key_cache_per_token
    _original/_lisa (floats cached per token for keys, summed over replaced layers).
    """
    state: LisaState | None = getattr(model, "lisa_state", None)
    if state is None:
        raise ValueError("model has no LiSA layers; call apply_lisa first")
    geometry = family_of(model).geometry(model)
    per_layer = qk_costs(geometry, state.mode, state.rank, state.ffn_hidden, context_len)
    n = len(state.layers)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    low_keys = geometry.num_heads * state.rank if state.mode in ("full", "lowrank") else 1
    report = {
        "layers": list(state.layers), "mode": state.mode, "rank": state.rank, "ffn_hidden": state.ffn_hidden,
        "context_len": context_len,
        "lisa_parameter_count": lisa_parameter_count(model),
        "trainable_parameters": trainable, "total_parameters": total, "trainable_fraction": trainable / total,
        "qk_params_original": n * per_layer["original_params"], "qk_params_lisa": n * per_layer["lisa_params"],
        "qk_flops_per_token_original": n * per_layer["original_flops"],
        "qk_flops_per_token_lisa": n * per_layer["lisa_flops"],
        "key_cache_per_token_original": n * geometry.num_kv_heads * geometry.head_dim,
        "key_cache_per_token_lisa": n * low_keys,
    }
    report["qk_compression_ratio"] = _ratio(report["qk_params_original"], report["qk_params_lisa"])
    report["qk_flop_ratio"] = _ratio(report["qk_flops_per_token_original"], report["qk_flops_per_token_lisa"])
    return report


@contextmanager
def _swapped(model: nn.Module, replacements: Mapping[int, nn.Module]) -> Iterator[None]:
    """Temporarily install attention modules at the given layer indices, restoring the originals."""
    adapter = family_of(model)
    blocks = adapter.layers(model)
    originals = {i: adapter.attention(blocks[i]) for i in replacements}
    try:
        for i, module in replacements.items():
            adapter.set_attention(blocks[i], module)
        yield
    finally:
        for i, module in originals.items():
            adapter.set_attention(blocks[i], module)
        score_bus(model).clear()


@contextmanager
def recording_attention(model: nn.Module, all_layers: bool = True) -> Iterator[dict]:
    """Inside the block, forwards record {layer: {"scores", "probs"}} into the yielded dict.

    all_layers: also route ordinary layers through eager `ScoreAttention` (same weights, restored
    on exit); otherwise only layers that are already eager (LiSA and its sources) record. Scores are
    pre-mask, probs are post-mask softmax. Tensors keep their autograd graph if grad is enabled.
    """
    adapter, bus = family_of(model), score_bus(model)
    geometry, blocks = adapter.geometry(model), adapter.layers(model)
    swaps = {}
    if all_layers:
        for i, block in enumerate(blocks):
            attn = adapter.attention(block)
            if not isinstance(attn, _EagerAttention):
                swaps[i] = ScoreAttention(attn, adapter, geometry, i, bus)
    captured: dict = {}
    with _swapped(model, swaps):
        bus.capture = captured
        try:
            yield captured
        finally:
            bus.capture = None


@contextmanager
def sharing_layer(model: nn.Module, layer: int) -> Iterator[None]:
    """Temporarily run ``layer`` with naive sharing (its probabilities = layer-1's); used as the
    perturbation in `analysis.layer_sensitivity`. ``layer`` must be an ordinary (non-LiSA) layer."""
    adapter, bus = family_of(model), score_bus(model)
    geometry, blocks = adapter.geometry(model), adapter.layers(model)
    if not 1 <= layer < len(blocks):
        raise ValueError(f"layer must be in 1..{len(blocks) - 1}, got {layer}")
    current = adapter.attention(blocks[layer])
    if isinstance(current, LisaAttention):
        raise ValueError(f"layer {layer} already uses LiSA")
    shared = LisaAttention(current, adapter, geometry, layer, bus, mode="share", rank=1, ffn_hidden=2)
    after = adapter.attention(blocks[layer + 1]) if layer + 1 < len(blocks) else None
    shared.publish = isinstance(after, LisaAttention) and after.needs_previous
    swaps = {layer: shared}
    prev = adapter.attention(blocks[layer - 1])
    published = getattr(prev, "publish", None)
    if not isinstance(prev, _EagerAttention):
        swaps[layer - 1] = ScoreAttention(prev, adapter, geometry, layer - 1, bus)
    elif isinstance(prev, LisaAttention):
        prev.publish = True
    try:
        with _swapped(model, swaps):
            yield
    finally:
        if isinstance(prev, LisaAttention):
            prev.publish = published
