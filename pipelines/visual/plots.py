"""Figures of the visual branch: where selection lands in embedding space, and best-of-n hallucination."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.evaluation.plots import save_figure  # noqa: E402


def _pca_basis(x: np.ndarray, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:dims].T


def plot_embedding_map(emb: Mapping[str, np.ndarray], selected: Mapping[str, Sequence[bool]], path: Path,
                       seed: int = 0, max_points: int = 3000) -> None:
    """Two panels (caption pool, text pool) in the visual targets' first two principal components."""
    l2 = {k: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for k, v in emb.items()}
    mean, basis = _pca_basis(np.concatenate([l2["visual"], l2["caption"], l2["text"]]))
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    for ax, pool in zip(axes, ("caption", "text")):
        pts = (l2[pool] - mean) @ basis
        mask = np.asarray(selected[pool], dtype=bool)
        show = rng.permutation(len(pts))[:max_points]
        ax.scatter(*pts[show][~mask[show]].T, s=4, c="#bbbbbb", label=f"{pool} pool (not kept)")
        ax.scatter(*pts[show][mask[show]].T, s=5, c="#1f77b4", label=f"{pool} kept by OT")
        tgt = (l2["visual"] - mean) @ basis
        ax.scatter(*tgt.T, s=6, c="#d62728", marker="x", label="visual targets")
        ax.set_title(f"{pool} selection (PCA of policy embeddings)")
        ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    save_figure(fig, path)


def plot_hallucination_by_n(rows: Sequence[Mapping], path: Path, title: str) -> None:
    """Hallucination rate of the pick against n, one line per chooser (bounds included), with 95% intervals.

    Not `pipelines.evaluation.plot_best_of_n`: that one draws gold reward with an oracle-argmax line;
    here the measure is the hallucination rate (lower is better) and the oracle is a chooser.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for chooser in sorted({r["chooser"] for r in rows}):
        pts = sorted((r for r in rows if r["chooser"] == chooser), key=lambda r: r["n"])
        ns = [r["n"] for r in pts]
        mean = np.array([r["hallucination_rate"] for r in pts])
        err = np.array([[m - r["hallucination_rate_ci95_low"], r["hallucination_rate_ci95_high"] - m]
                        for m, r in zip(mean, pts)]).T
        ax.errorbar(ns, mean, yerr=err, marker="o", capsize=3, label=chooser)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n (samples per prompt)")
    ax.set_ylabel("gold hallucination rate of the pick (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
