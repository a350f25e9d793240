"""The pipeline's intervals are scipy's BCa bootstrap, paired where paired, with defined degenerate cases."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipelines.evaluation.bootstrap import bootstrap_mean_ci, indexed_statistic_ci, paired_difference_ci


def test_mean_interval_is_scipys_bca():
    values = np.random.default_rng(3).exponential(size=200)
    mean, low, high = bootstrap_mean_ci(values, n_resamples=2000, seed=5)
    expected = stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa",
                               rng=np.random.default_rng(5)).confidence_interval
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((expected.low, expected.high))
    # BCa corrects the skew of an exponential mean: the interval is not symmetric about the mean
    assert (high - mean) > (mean - low)
    assert bootstrap_mean_ci(values, 2000, seed=5) == (mean, low, high)


def test_paired_interval_resamples_pairs_not_each_side():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=300) * 5.0  # large per-item variation common to both systems
    a, b = shared + 0.3 + rng.normal(scale=0.1, size=300), shared + rng.normal(scale=0.1, size=300)
    diff, low, high = paired_difference_ci(a, b, n_resamples=1000)
    assert diff == pytest.approx(np.mean(a - b))
    assert 0.2 < low < diff < high < 0.4  # unpaired, the shared variation would swamp the 0.3 gap
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference_ci(a, b[:-1])


def test_degenerate_samples_give_a_point_interval():
    assert bootstrap_mean_ci([0.7]) == (0.7, 0.7, 0.7)
    assert bootstrap_mean_ci([1.0] * 50) == (1.0, 1.0, 1.0)
    assert paired_difference_ci([1, 2, 3], [0, 1, 2]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([])


def test_interval_always_contains_the_point_even_when_bca_is_undefined():
    credit = np.zeros(40)
    credit[0] = 1.0  # one success in 40: BCa's acceleration is extreme but defined
    mean, low, high = bootstrap_mean_ci(credit, n_resamples=500)
    assert low <= mean <= high and low >= 0.0


def test_indexed_statistic_interval_for_a_whole_set_statistic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=150)
    y = x + rng.normal(scale=0.5, size=150)
    point, low, high = indexed_statistic_ci(150, lambda i: stats.spearmanr(x[i], y[i]).statistic, 500, seed=2)
    assert point == pytest.approx(stats.spearmanr(x, y).statistic)
    assert 0.0 < low < point < high < 1.0
