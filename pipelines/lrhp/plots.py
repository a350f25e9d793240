"""Plots of the LRHP downstream experiments: selection curves over K, predicted against true margins."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_selection_curves(rows: Sequence[Mapping], path: Path, title: str) -> None:
    """One panel per target: gold-order accuracy against K per method; "all data" as a dashed line."""
    from pipelines.evaluation.plots import save_figure

    plt = _plt()
    targets = sorted({r["target"] for r in rows})
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        mine = [r for r in rows if r["target"] == target]
        for method in sorted({r["method"] for r in mine}):
            pts = sorted((r["k"], r["acc_gold"]) for r in mine if r["method"] == method)
            if method == "all":
                ax.axhline(pts[0][1], linestyle="--", color="grey", label=f"all data (K={pts[0][0]})")
            else:
                ax.plot([k for k, _ in pts], [a for _, a in pts], marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (selected pool pairs)")
        ax.set_ylabel("gold-order accuracy on target test pairs")
        ax.set_title(target)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_margins(true: np.ndarray, predicted: Mapping[str, np.ndarray], path: Path, title: str) -> None:
    """Predicted against true gold margin, one panel per predictor."""
    from pipelines.evaluation.plots import save_figure

    plt = _plt()
    names = list(predicted)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.scatter(true, predicted[name], s=8, alpha=0.6)
        lo, hi = float(min(true.min(), predicted[name].min())), float(max(true.max(), predicted[name].max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        ax.set_xlabel("gold margin")
        ax.set_ylabel("predicted margin")
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
