"""Proxy rewards for RL: a reward model turned into one number per (prompt, response).

BT gives a scalar directly. GRAM is pairwise, so a response is scored by the swap-averaged
probability that it beats a fixed reference response to the same prompt (here the SFT policy's
greedy response), as GRAM's authors do for RL. Both are standardised with the mean and standard
deviation measured on the initial policy's samples (as in Ziegler et al. 2019), so one KL
coefficient means the same trade-off for either reward model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

ScoreFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


def bt_score_fn(rm, batch_size: int = 32) -> ScoreFn:
    """Scalar Bradley-Terry reward of each response."""
    def score(prompts: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        return rm.rewards(list(prompts), list(texts), batch_size=batch_size).float()
    return score


def gram_score_fn(gram, references: Mapping[str, str], batch_size: int = 32) -> ScoreFn:
    """P(response beats the prompt's reference response), swap-averaged, in [0, 1]."""
    def score(prompts: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        if isinstance(references, ReferenceResponses):
            references.ensure(prompts)
        missing = [p for p in prompts if p not in references]
        if missing:
            raise KeyError(f"no GRAM reference response for {len(missing)} prompts, e.g. {missing[0]!r}")
        refs = [references[p] for p in prompts]
        return gram.prob_first_better(list(prompts), list(texts), refs, batch_size=batch_size)["p"].float()
    return score


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
