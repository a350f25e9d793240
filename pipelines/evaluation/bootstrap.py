"""Bootstrap confidence intervals: every quality number the pipeline reports comes with one."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_mean_ci(values: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a percentile bootstrap of the mean; a single value gives a zero-width interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_mean_ci needs at least one value")
    mean = float(data.mean())
    if data.size == 1 or n_resamples <= 0:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_resamples, data.size))
    means = data[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return mean, float(low), float(high)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """Bootstrap CI of mean(a - b) over paired items (same prompts scored twice)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return bootstrap_mean_ci(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64),
                             n_resamples, seed, confidence)
