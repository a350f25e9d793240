"""Scoring a visual reward model on held-out visual pairs, and reading its per-pair credit back."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.evaluation.bootstrap import paired_difference_ci
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import evaluate_pairs, plot_reliability
from pipelines.evaluation.reward_metrics import gold_order_correctness
from pipelines.models.reward.visual import VisualRewardModel

TEST_SPLIT = "test_visual"
PAIR_COLUMNS = ["id", "p", "gold_chosen", "gold_rejected"]


def pairs_csv(plots_dir: Path, prefix: str = "") -> Path:
    """Where a model's per-pair credits go: plots/pairs.csv, or plots/pairs_<variant>.csv for an ablation."""
    tag = f"_{prefix.strip('/')}" if prefix else ""
    return Path(plots_dir) / f"pairs{tag}.csv"


def evaluate_visual_rm(rm: VisualRewardModel, images: Callable, records: Sequence[dict], plots_dir: Path,
                       seed: int, n_bootstrap: int, batch_size: int, prefix: str = "") -> dict:
    """Shared-harness metrics on held-out visual pairs; per-pair credits to plots_dir/pairs*.csv for paired tests."""
    metrics, details = evaluate_pairs(rm.scorer(images), list(records), TEST_SPLIT, seed=seed,
                                      n_bootstrap=n_bootstrap, batch_size=batch_size)
    n = len(details.ids)
    gold_c = details.gold_chosen if details.gold_chosen is not None else [None] * n
    gold_r = details.gold_rejected if details.gold_rejected is not None else [None] * n
    rows = [{"id": i, "p": float(p), "gold_chosen": gc, "gold_rejected": gr}
            for i, p, gc, gr in zip(details.ids, details.p, gold_c, gold_r)]
    write_csv(rows, pairs_csv(plots_dir, prefix), PAIR_COLUMNS)
    if not prefix:
        plot_reliability(details.label_bins, Path(plots_dir) / "reliability.png", "Visual RM reliability (test)")
    return {f"{prefix}{k}": (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}


def blanked(images: Callable) -> Callable:
    """The image-blanked control: each image replaced by a flat image of its own mean colour.

    A reward model that reads the image loses accuracy on pairs that only the image separates; one
    that ranks by the text alone (how many facts, which words) keeps it."""
    def flat(record: dict):
        image = images(record)
        if image is None:
            return None
        return np.broadcast_to(image.mean(axis=(0, 1), keepdims=True).round(), image.shape).astype(np.uint8)
    return flat


def image_reliance(with_image: Path, blank: Path, n_boot: int, seed: int) -> dict:
    """Gold-order accuracy with the image minus with it blanked, paired over the same pairs (95% CI)."""
    a, b = pair_credit(with_image), pair_credit(blank)
    ids = sorted(set(a) & set(b))
    d, low, high = paired_difference_ci(np.array([a[i] for i in ids]), np.array([b[i] for i in ids]), n_boot, seed)
    return {"image_minus_blank": round(d, 5), "image_minus_blank_ci95_low": round(low, 5),
            "image_minus_blank_ci95_high": round(high, 5)}


def accuracy_key(metrics: dict, prefix: str = "") -> str:
    """Gold-order accuracy where the test pairs have gold, else label accuracy (real test pairs)."""
    gold = f"{prefix}{TEST_SPLIT}/acc_gold"
    return gold if gold in metrics else f"{prefix}{TEST_SPLIT}/acc_label"


def pair_credit(path: Path) -> dict[str, float]:
    """Per-pair gold-order credit from a pairs CSV (gold ties dropped); label credit on real pairs."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    p = np.array([float(r["p"]) for r in rows])
    if any(r["gold_chosen"] in ("", None) for r in rows):  # real test pairs: the label is all there is
        return {r["id"]: float(1.0 if x > 0.5 else 0.5 if x == 0.5 else 0.0) for r, x in zip(rows, p)}
    credit, used = gold_order_correctness(p, [float(r["gold_chosen"]) for r in rows],
                                          [float(r["gold_rejected"]) for r in rows])
    return {r["id"]: float(c) for r, c, u in zip(rows, credit, used) if u}
