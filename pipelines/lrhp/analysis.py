"""How well pair vectors separate kinds of preference and orders: nearest-neighbour kind accuracy,
order-aware preference accuracy, and the 2-D map (PCA) of the vectors coloured by prompt family."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def knn_kind_accuracy(ref: torch.Tensor, ref_kinds: Sequence[str], query: torch.Tensor,
                      query_kinds: Sequence[str]) -> float:
    """Share of query vectors whose most cosine-similar reference vector has the same kind."""
    nearest = (query @ ref.T).argmax(dim=1).tolist()
    return float(np.mean([ref_kinds[j] == k for j, k in zip(nearest, query_kinds)]))


def majority_share(ref_kinds: Sequence[str], query_kinds: Sequence[str]) -> float:
    """The kNN accuracy of always answering the most common reference kind (the chance line)."""
    top = Counter(ref_kinds).most_common(1)[0][0]
    return float(np.mean([k == top for k in query_kinds]))


def order_credit(logit_forward: torch.Tensor, logit_swapped: torch.Tensor) -> np.ndarray:
    """Per pair: half credit for calling chosen-first "A preferred", half for calling the swap "B preferred".

    A head that always answers "A" scores 0.5, so the canonical order alone cannot flatter it.
    """
    return 0.5 * (logit_forward > 0).float().numpy() + 0.5 * (logit_swapped < 0).float().numpy()


def gold_credit(credit: np.ndarray, records: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(credit against the gold order, mask of non-tied pairs): credit flips where the label disagrees with gold."""
    margin = np.array([float(r["gold_chosen"]) - float(r["gold_rejected"]) for r in records])
    keep = margin != 0
    return np.where(margin > 0, credit, 1.0 - credit)[keep], keep


def pca_2d(z: torch.Tensor) -> np.ndarray:
    """The vectors projected on their first two principal axes (sign fixed so the map is deterministic)."""
    x = z.double().numpy()
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:2]
    axes = axes * np.where(axes[np.arange(2), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    return x @ axes.T


def plot_map(xy: np.ndarray, groups: Sequence[str], path: Path, title: str) -> None:
    """Scatter of the 2-D map, one colour per group (prompt family)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.evaluation.plots import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, g in enumerate(sorted(set(groups))):
        idx = [j for j, x in enumerate(groups) if x == g]
        ax.scatter(xy[idx, 0], xy[idx, 1], s=9, alpha=0.7, label=g, color=plt.cm.tab10(i % 10))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    save_figure(fig, path)
