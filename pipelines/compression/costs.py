"""What a LiSA replacement saves: Q/K parameters, Q/K FLOPs per token and key-cache size."""

from __future__ import annotations

import math

from torch import nn

from pipelines.compression.families import AttentionGeometry, family_of
from pipelines.compression.lisa import LisaState, lisa_parameter_count


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
