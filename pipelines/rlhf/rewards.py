"""Proxy rewards for RL: normalising a reward model's scores, and GRAM's reference responses.

A reward model's `score` (see `pipelines.models.reward.registry`) gives one number per (prompt,
response). Scores are standardised with the mean and standard deviation measured on the initial
policy's samples (as in Ziegler et al. 2019), so one KL coefficient means the same trade-off for
any reward model. GRAM scores against a reference response per prompt, kept in `ReferenceResponses`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

ScoreFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


@dataclass
class RewardNormalizer:
    """``(score - mean) / std`` with statistics frozen from the initial policy's samples."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, scores: torch.Tensor, min_std: float = 1e-3) -> "RewardNormalizer":
        scores = scores.float()
        std = float(scores.std()) if scores.numel() > 1 else 1.0
        return cls(mean=float(scores.mean()), std=max(std, min_std))

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores.float() - self.mean) / self.std


class ReferenceResponses(dict):
    """prompt -> reference response, generated on first use (greedy, batched) and then kept.

    GRAM scores a sample against its prompt's reference; computing references lazily means a PPO
    run pays only for the prompts it actually draws.
    """

    def __init__(self, generate: Callable[[list[str]], list[str]]):
        super().__init__()
        self._generate = generate

    def ensure(self, prompts: Sequence[str]) -> None:
        missing = list(dict.fromkeys(p for p in prompts if p not in self))
        if missing:
            self.update(zip(missing, self._generate(missing)))
