"""Pure numpy metrics for pairwise reward models and judges.

Every function takes P(first response better) per pair, so a discriminative reward model
(sigmoid of a reward difference) and a generative judge are graded by the same code. Exactly
0.5 is a tie: it earns half credit, because a judge that cannot decide is neither right nor wrong.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .bootstrap import bootstrap_mean_ci

ArrayLike = Sequence[float] | np.ndarray


def as_vector(values: ArrayLike, name: str) -> np.ndarray:
    """A non-empty 1-D float array; raising here beats a silent nan mean further down."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input, nothing to evaluate")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains nan")
    return arr


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {k: v.size for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs differ in length: {lengths}")


def pairwise_correctness(p_chosen_better: ArrayLike) -> np.ndarray:
    """Per-pair credit against the label: 1 if p > 0.5, 0.5 if p == 0.5, else 0."""
    p = as_vector(p_chosen_better, "p_chosen_better")
    return np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))


def pairwise_accuracy(p_chosen_better: ArrayLike) -> float:
    """Share of pairs where the labelled-chosen response is preferred (ties count half)."""
    return float(pairwise_correctness(p_chosen_better).mean())


def gold_order_correctness(p_chosen_better: ArrayLike, gold_chosen: ArrayLike, gold_rejected: ArrayLike,
                           tie_tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """(credit, used): per-pair credit against the gold ordering, and the mask of non-tied pairs.

    Gold ties say nothing about which side is better, so they are excluded rather than scored.
    `credit` has an entry for every pair; only entries where `used` is True are meaningful.
    """
    p = as_vector(p_chosen_better, "p_chosen_better")
    gc = as_vector(gold_chosen, "gold_chosen")
    gr = as_vector(gold_rejected, "gold_rejected")
    _same_length(p_chosen_better=p, gold_chosen=gc, gold_rejected=gr)
    diff = gc - gr
    used = np.abs(diff) > tie_tol
    first_is_better = diff > 0
    predicted_first = p > 0.5
    credit = np.where(p == 0.5, 0.5, (predicted_first == first_is_better).astype(np.float64))
    return credit, used


def gold_order_accuracy(p_chosen_better: ArrayLike, gold_chosen: ArrayLike, gold_rejected: ArrayLike,
                        tie_tol: float = 1e-9) -> tuple[float, int]:
    """(accuracy against the gold reward's ordering, number of non-tied pairs used).

    The label is a noisy annotator; the gold ordering is the truth the label approximates. If
    every pair is a gold tie the accuracy is nan with n_used == 0 (no information, not an error).
    """
    credit, used = gold_order_correctness(p_chosen_better, gold_chosen, gold_rejected, tie_tol)
    n_used = int(used.sum())
    return (float(credit[used].mean()) if n_used else float("nan")), n_used


def position_bias_rate(p_order1: ArrayLike, p_order2: ArrayLike) -> float:
    """Share of pairs where swapping presentation order flips the winner.

    Both inputs are P(y1 better), with y1 shown first (order1) or second (order2); an
    order-invariant judge scores 0, one that always picks position A scores 1.
    """
    a = as_vector(p_order1, "p_order1")
    b = as_vector(p_order2, "p_order2")
    _same_length(p_order1=a, p_order2=b)
    return float(np.mean((a > 0.5) != (b > 0.5)))


def expected_calibration_error(p: ArrayLike, outcome: ArrayLike, n_bins: int = 10) -> tuple[float, list[dict]]:
    """(ECE, per-bin table) of a binary preference predictor, folded to the predicted side.

    `p` is P(first better) and `outcome` is 1 where the first really is better, 0 otherwise.
    Confidence is max(p, 1 - p) and correctness is whether the predicted side won (half for
    p == 0.5), so the two symmetric halves of [0, 1] are pooled into equal-width bins over
    [0.5, 1]. ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|. Empty bins keep a row
    with count 0 and nan statistics so a reliability plot shows the gaps.
    """
    probs = as_vector(p, "p")
    out = as_vector(outcome, "outcome")
    _same_length(p=probs, outcome=out)
    if not np.isin(out, (0.0, 1.0)).all():
        raise ValueError("outcome must be 0 or 1 for every pair")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = np.maximum(probs, 1.0 - probs)
    correct = np.where(probs == 0.5, 0.5, ((probs > 0.5) == (out == 1.0)).astype(np.float64))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    ece, table = 0.0, []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        row = {"bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "count": count,
               "mean_confidence": float("nan"), "accuracy": float("nan")}
        if count:
            row["mean_confidence"] = float(confidence[members].mean())
            row["accuracy"] = float(correct[members].mean())
            ece += count / probs.size * abs(row["accuracy"] - row["mean_confidence"])
        table.append(row)
    return float(ece), table


def accuracy_ci(credit: ArrayLike, n_resamples: int = 1000, seed: int = 0,
                confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) BCa bootstrap interval of an accuracy from its per-pair credit."""
    return bootstrap_mean_ci(as_vector(credit, "credit"), n_resamples, seed, confidence)


def best_of_n_kl(n: int) -> float:
    """Analytic KL(best-of-n || base policy) = log n - (n - 1) / n (an upper bound in general)."""
    if int(n) != n or n < 1:
        raise ValueError(f"best-of-n needs an integer n >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n
