"""Bootstrap confidence intervals: every quality number the pipeline reports comes with one.

All intervals come from `scipy.stats.bootstrap` with the bias-corrected and accelerated (BCa) method,
paired where two numbers were measured on the same items. The only hand-written part is the fallback
for data on which BCa is undefined (every value equal, or every resample giving the same statistic,
where scipy returns NaN): the interval then collapses to the point estimate or to the percentile
interval, which scipy also computes.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

# The BCa jackknife builds n leave-one-out samples of n - 1 values each; batching keeps that O(batch * n)
# in memory instead of O(n^2) (12,000 pairs would otherwise need over 1 GB).
_JACKKNIFE_BATCH = 256


def scipy_interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., float], point: float,
                   n_resamples: int, seed: int, confidence: float, paired: bool,
                   vectorized: bool) -> tuple[float, float, float]:
    """(point, low, high) from scipy's BCa bootstrap; falls back to percentile when BCa is undefined.

    The interval is widened to hold the point estimate: with very skewed resamples BCa can end a hair
    short of it, and a reported number outside its own interval reads as a bug.
    """
    size = len(samples[0])
    if n_resamples <= 0 or size < 2:
        return point, point, point
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence,
                                     method=method, paired=paired, vectorized=vectorized,
                                     batch=_JACKKNIFE_BATCH, rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return point, min(low, point), max(high, point)
    return point, point, point


def bootstrap_mean_ci(values: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): BCa bootstrap of the mean; one value or identical values give a zero-width interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_mean_ci needs at least one value")
    mean = float(data.mean())
    if np.ptp(data) == 0:
        return mean, mean, mean
    return scipy_interval((data,), np.mean, mean, n_resamples, seed, confidence, paired=False, vectorized=True)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean(a - b), low, high): paired BCa bootstrap over items scored twice (same prompts, same pairs)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.size == 0:
        raise ValueError("paired_difference_ci needs at least one pair")
    diff = first - second
    point = float(diff.mean())
    if np.ptp(diff) == 0:
        return point, point, point
    return scipy_interval((first, second), _mean_difference, point, n_resamples, seed, confidence,
                          paired=True, vectorized=True)


def indexed_statistic_ci(size: int, statistic: Callable[[np.ndarray], float], n_resamples: int = 1000,
                         seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(statistic(all), low, high) for a statistic of a whole set of items (corpus BLEU, a rank correlation).

    Resamples item indices, so the statistic may read any per-item arrays it closes over; a statistic of
    several arrays measured on the same items is paired by construction.
    """
    if size <= 0:
        raise ValueError("indexed_statistic_ci needs at least one item")
    index = np.arange(size)
    point = float(statistic(index))
    return scipy_interval((index,), lambda i: float(statistic(np.asarray(i, dtype=np.int64))), point,
                          n_resamples, seed, confidence, paired=False, vectorized=False)
