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

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from pipelines.compression.attention import EagerAttention, LisaAttention, ScoreAttention, ScoreBus, score_bus
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
            if not isinstance(attn, EagerAttention):
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
    if not isinstance(prev, EagerAttention):
        swaps[layer - 1] = ScoreAttention(prev, adapter, geometry, layer - 1, bus)
    elif isinstance(prev, LisaAttention):
        prev.publish = True
    try:
        with _swapped(model, swaps):
            yield
    finally:
        if isinstance(prev, LisaAttention):
            prev.publish = published
