"""PNG plots a person would rather look at than read: training curves and grouped bars.

Every figure a stage writes goes through `save_figure`, which leaves out the PNG metadata
matplotlib would add (its version string), so a plot is byte-identical wherever it is drawn
from the same numbers with the same libraries.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path, **kwargs) -> Path:
    """Write `fig` as a deterministic PNG (no Software/date metadata) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None}, **kwargs)
    plt.close(fig)
    return path


def write_csv(rows: Sequence[Mapping], path: Path, columns: Sequence[str]) -> None:
    """A plain CSV DVC can plot (`dvc plots show`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def plot_training(history: Sequence[Mapping], path: Path, title: str, eval_key: str | None = None) -> None:
    """Training loss (and an eval metric on a second axis) against optimizer step."""
    steps = [r["step"] for r in history if "loss" in r]
    losses = [r["loss"] for r in history if "loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, losses, label="train loss", color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if eval_key:
        points = [(r["step"], r[eval_key]) for r in history if r.get(eval_key) is not None]
        if points:
            ax2 = ax.twinx()
            ax2.plot(*zip(*points), "o-", color="tab:orange", label=eval_key)
            ax2.set_ylabel(eval_key)
            ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], path: Path,
                      title: str, ylabel: str) -> None:
    """One group of bars per category, one bar per series."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(categories) + 2), 3.8), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(categories))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(categories))])
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
