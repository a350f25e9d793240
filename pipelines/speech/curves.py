"""Dev BLEU during training: against optimizer steps (tracked) and against training seconds (a machine fact).

`TimedEval` wraps the loop's eval function and notes, at each evaluation, the seconds spent
training so far with the evaluations' own time taken out, so the time axis is what training alone
cost on this machine. `plot_bleu_curves` draws several models' curves on one axis.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from pipelines.evaluation.plots import plt, save_figure

CURVE_COLUMNS = ["step", "train_seconds", "dev_bleu"]


class TimedEval:
    """`eval_fn` with a clock: `seconds[i]` is the training time before the i-th evaluation."""

    def __init__(self, eval_fn: Callable):
        self.eval_fn = eval_fn
        self.start = time.perf_counter()
        self.eval_seconds = 0.0
        self.seconds: list[float] = []

    def __call__(self, model) -> dict:
        began = time.perf_counter()
        self.seconds.append(round(began - self.start - self.eval_seconds, 2))
        out = self.eval_fn(model)
        self.eval_seconds += time.perf_counter() - began
        return out

    def rows(self, history: Sequence[Mapping]) -> list[dict]:
        """(step, train_seconds, dev_bleu) for each evaluation in the loop's history, in order."""
        evals = [r for r in history if "eval_bleu" in r]
        return [{"step": r["step"], "train_seconds": s, "dev_bleu": round(float(r["eval_bleu"]), 2)}
                for r, s in zip(evals, self.seconds)]


def plot_bleu_curves(series: Mapping[str, Sequence[tuple[float, float]]], path: Path, xlabel: str,
                     title: str) -> None:
    """One line per model: dev BLEU against `xlabel` (steps or seconds)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for name, points in series.items():
        if points:
            ax.plot(*zip(*points), "o-", label=name, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev BLEU (greedy)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
