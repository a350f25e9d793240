"""A toy reward model, the way a new one is added: this module, one `register` call, one profile entry.

It prefers longer responses (word count times a weight read from its model folder), so its best-of-n
pick is the longest candidate and a test can check the numbers downstream came from its picks.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from pipelines.models.reward.registry import RewardModelEntry

CONFIG = "toy.json"


class ToyScorer:
    def __init__(self, weight: float):
        self.weight = weight

    def score(self, prompts, responses) -> torch.Tensor:
        return torch.tensor([self.weight * len(r.split()) for r in responses], dtype=torch.float32)

    def prob_first_better(self, prompts, a, b) -> torch.Tensor:
        return torch.sigmoid(self.score(prompts, a) - self.score(prompts, b))

    def choose_best(self, prompts, candidates) -> list[int]:
        return [max(range(len(c)), key=lambda i: (len(c[i].split()), -i)) for c in candidates]


def save(model_dir: Path, weight: float = 1.0) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG).write_text(json.dumps({"weight": weight}))


def load(model_dir: Path, **context) -> ToyScorer:
    return ToyScorer(float(json.loads((Path(model_dir) / CONFIG).read_text())["weight"]))


ENTRY = RewardModelEntry(name="toy", modality="text", load=load, pick_rule="longest",
                         description="toy: longer is better")
