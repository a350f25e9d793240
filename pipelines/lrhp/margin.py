"""Preference margin prediction: a ridge-regression head on frozen pair vectors predicts the gold margin.

The head is closed-form ridge (deterministic, no tuning loop); baselines are single scores (the BT
score gap, GRAM's log-odds that the chosen one is better, the response-length ratio) mapped onto the
margin scale by a least-squares line fitted on the same training pairs, and a constant (the mean
training margin). Spearman is scale-free; MAE is on the gold scale after that fit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import spearmanr

from pipelines.evaluation.bootstrap import indexed_statistic_ci


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights (last entry the intercept, not penalised) of ``argmin |Xw + b - y|^2 + alpha |w|^2``."""
    if alpha < 0:
        raise ValueError(f"ridge alpha must be >= 0, got {alpha}")
    xa = np.hstack([x, np.ones((x.shape[0], 1))])
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def ridge_predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ w[:-1] + w[-1]


def cross_fitted(x: np.ndarray, y: np.ndarray, alpha: float, folds: int = 2) -> np.ndarray:
    """Out-of-fold ridge predictions for the training pairs themselves (contiguous folds)."""
    pred = np.zeros_like(y, dtype=np.float64)
    bounds = np.linspace(0, len(y), folds + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = np.ones(len(y), dtype=bool)
        mask[lo:hi] = False
        pred[lo:hi] = ridge_predict(ridge_fit(x[mask], y[mask], alpha), x[lo:hi])
    return pred


def line_fit(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line y ~ a * score + b (slope 0 for a constant score)."""
    if np.ptp(score) == 0:
        return 0.0, float(y.mean())
    a, b = np.polyfit(score, y, 1)
    return float(a), float(b)


def length_ratio(records: Sequence[dict]) -> np.ndarray:
    """len(chosen words) / len(rejected words): the length prior of DeepSpeed-Chat-Extension's margins."""
    return np.array([max(1, len(r["chosen"].split())) / max(1, len(r["rejected"].split())) for r in records])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant (no ranking to compare)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def spearman_difference_ci(true: np.ndarray, a: np.ndarray, b: np.ndarray, n_resamples: int,
                           seed: int) -> tuple[float, float, float]:
    """Spearman(a, true) - Spearman(b, true) with a paired BCa bootstrap 95% interval over pairs."""
    true, a, b = np.asarray(true), np.asarray(a), np.asarray(b)
    return indexed_statistic_ci(len(true), lambda i: spearman(a[i], true[i]) - spearman(b[i], true[i]),
                                n_resamples, seed)
