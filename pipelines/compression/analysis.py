"""Where LiSA can work: how similar adjacent layers' attention is, and how much each layer matters.

* `capture_attention`: per-layer pre-mask scores and post-softmax probabilities on one batch.
* `layer_pair_similarity`: for each adjacent pair (l-1, l) an H x H matrix, entry [a, b] = mean
  similarity between head a of layer l-1 and head b of layer l over the valid (non-padding) query
  rows. Metrics: "cosine" (of probability rows) or "js" (1 - Jensen-Shannon divergence in bits,
  in [0, 1]). Reported per pair: same-index mean (diagonal), the mean after the best one-to-one
  head matching (scipy's linear_sum_assignment, maximising), and that matching as a permutation
  with perm[b] = a, i.e. the head of layer l-1 that head b of layer l should start from -- the
  format `apply_lisa(permutations=...)` takes.
* `layer_sensitivity`: relative perplexity increase when a layer's attention is perturbed by
  naive sharing (its probabilities replaced by layer l-1's, W_V/W_O kept; `lisa.sharing_layer`),
  one layer at a time. Layer 0 has no predecessor and gets NaN. High = a bad LiSA candidate.
* `plot_similarity_grid`, `plot_sensitivity`: PNG heatmaps / bars (matplotlib, Agg).

Results are plain dicts of lists, floats and numpy arrays.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from pipelines.compression.families import family_of
from pipelines.compression.attention import LisaAttention
from pipelines.compression.lisa import recording_attention, sharing_layer
from pipelines.compression.objective import perplexity

METRICS = ("cosine", "js")


@torch.no_grad()
def capture_attention(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict:
    """{"scores": [L x (B,H,T,T)], "probs": [L x (B,H,T,T)], "attention_mask": (B,T)} as numpy."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    extra = {"use_cache": False} if family_of(model).name == "llama" else {}
    was_training = model.training
    model.eval()
    try:
        with recording_attention(model) as captured:
            model(input_ids=input_ids, attention_mask=attention_mask, **extra)
    finally:
        model.train(was_training)
    layers = sorted(captured)
    return {
        "scores": [captured[i]["scores"].float().numpy() for i in layers],
        "probs": [captured[i]["probs"].float().numpy() for i in layers],
        "attention_mask": attention_mask.numpy(),
    }


def head_similarity(first: np.ndarray, second: np.ndarray, attention_mask: np.ndarray | None = None,
                    metric: str = "cosine") -> np.ndarray:
    """H x H matrix: [a, b] = mean over valid query rows of sim(first[:, a, t], second[:, b, t])."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    p, q = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    valid = np.ones(p.shape[0:1] + p.shape[2:3]) if attention_mask is None else np.asarray(attention_mask, float)
    weight = valid / valid.sum()  # (B, T) over query rows
    if metric == "cosine":
        pn = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
        qn = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        return np.einsum("batk,bctk,bt->ac", pn, qn, weight)
    heads = p.shape[1]
    out = np.empty((heads, q.shape[1]))
    for a in range(heads):
        pa = p[:, a : a + 1]  # (B, 1, T, T) against all heads of q
        mid = (pa + q) / 2
        js = 0.5 * _kl_bits(pa, mid) + 0.5 * _kl_bits(q, mid)  # (B, H, T)
        out[a] = 1.0 - np.einsum("bct,bt->c", js, weight)
    return out


def _kl_bits(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    ratio = np.where(p > 0, p / np.maximum(m, 1e-300), 1.0)
    return np.sum(np.where(p > 0, p * np.log2(ratio), 0.0), axis=-1)


def best_head_matching(similarity: np.ndarray) -> tuple[list[int], float]:
    """(perm, mean matched similarity) with perm[b] = a maximising sum of similarity[a, b]."""
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    perm = np.empty(similarity.shape[1], dtype=int)
    perm[cols] = rows
    return perm.tolist(), float(similarity[rows, cols].mean())


def layer_pair_similarity(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          metric: str = "cosine", captured: dict | None = None) -> dict:
    """{"metric", "pairs": [{"layer": l, "matrix", "same_index", "matched", "permutation"}]} for
    l = 1..L-1 (pair l-1 -> l). Pass ``captured`` (from `capture_attention`) to skip the forward."""
    captured = captured or capture_attention(model, input_ids, attention_mask)
    probs, mask = captured["probs"], captured["attention_mask"]
    pairs = []
    for layer in range(1, len(probs)):
        matrix = head_similarity(probs[layer - 1], probs[layer], mask, metric)
        perm, matched = best_head_matching(matrix)
        pairs.append({"layer": layer, "matrix": matrix, "same_index": float(np.mean(np.diag(matrix))),
                      "matched": matched, "permutation": perm})
    return {"metric": metric, "pairs": pairs}


def head_permutations(similarity: dict) -> dict[int, list[int]]:
    """{layer: perm} from `layer_pair_similarity`, ready for `apply_lisa(permutations=...)`."""
    return {pair["layer"]: pair["permutation"] for pair in similarity["pairs"]}


def layer_sensitivity(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 8, *,
                      mask_token_id: int | None = None, seed: int = 0) -> dict:
    """{"perturbation": "share", "base_ppl", "layers", "ppl", "relative_increase"} (lists by layer;
    NaN for layer 0 and for layers that already use LiSA)."""
    adapter = family_of(model)
    blocks = adapter.layers(model)
    kw = dict(batch_size=batch_size, mask_token_id=mask_token_id, seed=seed)
    base = perplexity(model, sequences, **kw)
    ppl = [math.nan] * len(blocks)
    for layer in range(1, len(blocks)):
        if isinstance(adapter.attention(blocks[layer]), LisaAttention):
            continue
        with sharing_layer(model, layer):
            ppl[layer] = perplexity(model, sequences, **kw)
    return {"perturbation": "share", "base_ppl": base, "layers": list(range(len(blocks))), "ppl": ppl,
            "relative_increase": [p / base - 1.0 for p in ppl]}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_similarity_grid(similarity: dict, path: str | Path, columns: int = 4) -> Path:
    """One heatmap per adjacent layer pair (rows: heads of l-1, columns: heads of l); matched cells
    are boxed and titles give same-index vs matched mean similarity."""
    pairs = similarity["pairs"]
    if not pairs:
        raise ValueError("no layer pairs to plot (a one-layer model)")
    plt = _pyplot()
    cols = max(1, min(columns, len(pairs)))
    rows = max(1, math.ceil(len(pairs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 1.0, 3.0 * rows), dpi=110, squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, pair in zip(axes.flat, pairs):
        matrix = pair["matrix"]
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        for b, a in enumerate(pair["permutation"]):
            ax.add_patch(plt.Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1))
        ax.set_title(f"L{pair['layer'] - 1}->L{pair['layer']}  same {pair['same_index']:.2f} / "
                     f"matched {pair['matched']:.2f}", fontsize=7)
        ax.set_xlabel(f"head of L{pair['layer']}", fontsize=7)
        ax.set_ylabel(f"head of L{pair['layer'] - 1}", fontsize=7)
        ticks = range(0, matrix.shape[0], max(1, matrix.shape[0] // 8))
        ax.set_xticks(ticks), ax.set_yticks(ticks)
        ax.tick_params(labelsize=6)
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"{similarity['metric']} similarity")
    return _save(fig, plt, path)


def plot_sensitivity(sensitivity: dict, path: str | Path) -> Path:
    """Bar per layer: relative perplexity increase under naive sharing (layer 0 left empty)."""
    plt = _pyplot()
    layers = sensitivity["layers"]
    values = [0.0 if math.isnan(v) else v for v in sensitivity["relative_increase"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(layers)), 3.2), dpi=110)
    ax.bar(layers, values, color="tab:blue")
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("relative ppl increase")
    ax.set_title(f"sensitivity ({sensitivity['perturbation']}), base ppl {sensitivity['base_ppl']:.2f}")
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    from pipelines.evaluation.plots import save_figure

    return save_figure(fig, path, bbox_inches="tight")
