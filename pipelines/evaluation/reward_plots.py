"""Plots for reward-model evaluation: reliability diagrams and best-of-n curves."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines.evaluation.plots import save_figure  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def plot_reliability(bin_table: Sequence[Mapping], path: Path, title: str) -> None:
    """Accuracy against confidence per bin (from `expected_calibration_error`), with the diagonal.

    Bar heights are accuracy, the dots mark mean confidence, and a light histogram shows how many
    pairs each bin holds, so a badly calibrated but nearly empty bin is not over-read.
    """
    if not bin_table:
        raise ValueError("plot_reliability: empty bin table")
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    ax.plot([0.5, 1.0], [0.5, 1.0], "--", color="gray", linewidth=1, label="perfect calibration")
    filled = [r for r in bin_table if r["count"] > 0]
    for r in filled:
        width = r["bin_high"] - r["bin_low"]
        ax.bar(r["bin_low"], r["accuracy"], width=width, align="edge", color="tab:blue", alpha=0.7,
               edgecolor="black", linewidth=0.5)
    if filled:
        ax.plot([r["mean_confidence"] for r in filled], [r["accuracy"] for r in filled], "o", color="tab:red",
                markersize=4, label="bin (confidence, accuracy)")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("confidence max(p, 1-p)")
    ax.set_ylabel("accuracy of predicted side")
    ax.set_title(title)
    total = sum(r["count"] for r in bin_table) or 1
    ax2 = ax.twinx()
    ax2.bar([r["bin_low"] for r in bin_table], [r["count"] / total for r in bin_table],
            width=[r["bin_high"] - r["bin_low"] for r in bin_table], align="edge", color="gray", alpha=0.2)
    ax2.set_ylim(0.0, 1.0)
    ax2.set_ylabel("share of pairs")
    ax.legend(loc="upper left", fontsize=7)
    _save(fig, path)


def plot_best_of_n(curves: Mapping[str, Sequence[Mapping]], path: Path,
                   title: str = "Best-of-n: gold reward of the picked response") -> None:
    """Gold reward against n (log2 axis), one line + CI band per model, oracle and n=1 baseline.

    The oracle and baseline come from the first curve: they depend only on the samples, which all
    models are expected to share.
    """
    if not curves or not any(curves.values()):
        raise ValueError("plot_best_of_n: no curves to plot")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, rows in curves.items():
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        line, = ax.plot(ns, [r["gold_mean"] for r in rows], "o-", label=name)
        ax.fill_between(ns, [r["gold_ci_low"] for r in rows], [r["gold_ci_high"] for r in rows],
                        color=line.get_color(), alpha=0.2)
    ref = next(rows for rows in curves.values() if rows)
    ns = [r["n"] for r in ref]
    ax.plot(ns, [r["oracle_gold_mean"] for r in ref], "k--", label="oracle (gold argmax)")
    ax.axhline(ref[0]["first_sample_gold_mean"], color="gray", linestyle=":", label="n=1 (random sample)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("n (candidates per prompt)")
    ax.set_ylabel("gold reward")
    kl = ", ".join(f"{n}:{r['kl_bound']:.2f}" for n, r in zip(ns, ref) if n > 1)
    ax.set_title(title, fontsize=10)
    if kl:
        ax.text(0.01, 0.01, f"KL bound (nats) {kl}", transform=ax.transAxes, fontsize=7, color="gray")
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def plot_adaptation(rows: Sequence[Mapping], inits: Sequence[str], path: Path,
                    title: str = "Adapting to a new task family with few labels") -> None:
    """Accuracy (gold order) against label budget, one line per starting model, with 95% CI bands."""
    budgets = [r["budget"] for r in rows]
    xs = list(range(len(budgets)))  # budgets are few and uneven (0, 16, 64): equal spacing reads best
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    for init in inits:
        ax.plot(xs, [r[init] for r in rows], "o-", label=init)
        ax.fill_between(xs, [r[f"{init}_low"] for r in rows], [r[f"{init}_high"] for r in rows], alpha=0.15)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.set_xlabel("labeled pairs from the adaptation family")
    ax.set_ylabel("accuracy vs gold order")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)
