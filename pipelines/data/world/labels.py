"""Simulated annotator: Bradley-Terry choice on gold rewards plus random label flips."""

from __future__ import annotations

import math
import random


def sigmoid(x: float) -> float:
    """Numerically safe logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def prob_prefer_a(r_a: float, r_b: float, temperature: float) -> float:
    """P(annotator prefers a) = sigmoid((r_a - r_b) / temperature); temperature 0 is a hard argmax."""
    if temperature <= 0:
        return 1.0 if r_a > r_b else 0.0 if r_a < r_b else 0.5
    return sigmoid((r_a - r_b) / temperature)


def sample_preference(r_a: float, r_b: float, temperature: float, flip_rate: float,
                      rng: random.Random) -> bool:
    """True when a is labelled as preferred; the Bradley-Terry draw is then flipped w.p. flip_rate."""
    prefers_a = rng.random() < prob_prefer_a(r_a, r_b, temperature)
    if rng.random() < flip_rate:
        prefers_a = not prefers_a
    return prefers_a


def expected_agreement(r_a: float, r_b: float, temperature: float, flip_rate: float) -> float | None:
    """Probability that the sampled label agrees with the gold ordering; None on a gold tie.

    With p = P(pick the gold-better one) = sigmoid(|r_a - r_b| / T), agreement is
    p * (1 - flip_rate) + (1 - p) * flip_rate.
    """
    if r_a == r_b:
        return None
    p = prob_prefer_a(max(r_a, r_b), min(r_a, r_b), temperature)
    return p * (1.0 - flip_rate) + (1.0 - p) * flip_rate
