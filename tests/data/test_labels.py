"""The simulated annotator agrees with gold as often as the analytic formula says."""

import math
import random

import pytest

from pipelines.data.world import expected_agreement, sample_preference


def _empirical(pairs, temperature, flip_rate, seed=0):
    rng = random.Random(seed)
    agree = 0
    for r_a, r_b in pairs:
        prefers_a = sample_preference(r_a, r_b, temperature, flip_rate, rng)
        agree += prefers_a == (r_a > r_b)
    return agree / len(pairs)


@pytest.mark.parametrize("temperature,flip_rate", [(0.1, 0.1), (0.5, 0.0), (1.0, 0.25)])
def test_agreement_matches_expectation(temperature, flip_rate):
    rng = random.Random(42)
    pairs = []
    while len(pairs) < 20000:
        r_a, r_b = round(rng.uniform(-1, 1), 2), round(rng.uniform(-1, 1), 2)
        if r_a != r_b:
            pairs.append((r_a, r_b))
    expected = sum(expected_agreement(a, b, temperature, flip_rate) for a, b in pairs) / len(pairs)
    empirical = _empirical(pairs, temperature, flip_rate)
    stderr = math.sqrt(expected * (1 - expected) / len(pairs))
    assert abs(empirical - expected) < 4 * stderr + 1e-9


def test_small_temperature_gives_one_minus_flip_rate():
    pairs = [(1.0, 0.0), (0.4, 0.0), (-1.0, 0.5)] * 4000
    empirical = _empirical(pairs, 1e-4, 0.15, seed=3)
    assert abs(empirical - 0.85) < 0.02
    assert expected_agreement(1.0, 0.0, 1e-4, 0.15) == pytest.approx(0.85)
    assert expected_agreement(1.0, 0.0, 0.0, 0.15) == pytest.approx(0.85)


def test_tie_is_excluded():
    assert expected_agreement(0.3, 0.3, 0.1, 0.1) is None


def test_symmetric_and_deterministic():
    assert expected_agreement(0.2, 0.9, 0.3, 0.1) == expected_agreement(0.9, 0.2, 0.3, 0.1)
    a = [sample_preference(0.5, 0.1, 0.2, 0.1, random.Random(8)) for _ in range(3)]
    assert len(set(a)) == 1
