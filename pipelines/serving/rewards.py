"""Pairwise preference from the text reward models: GRAM (generative judge) and BT (scalar head).

Request: prompt, response_a, response_b. Response: `p_a_better`, the probability that response_a
is preferred (GRAM: averaged over both presentation orders, as the stages score it; BT:
sigmoid(r_a - r_b)), and `reward_a` / `reward_b`. BT's rewards are its scalar head. GRAM has no
absolute reward, so its rewards are each response's mean log-probability of winning over the two
orders (higher is better; their difference is GRAM's log-odds under a geometric mean of the orders).
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipelines.serving import Column, Family, register, text

INPUTS = (Column("prompt", "string"), Column("response_a", "string"), Column("response_b", "string"))
OUTPUTS = (Column("p_a_better", "double"), Column("reward_a", "double"), Column("reward_b", "double"))


def example(_model_dir: Path) -> list[dict]:
    return [{"prompt": "Name a fruit that is yellow.", "response_a": "A banana is yellow.",
             "response_b": "The sky is blue."},
            {"prompt": "How many legs does a cat have?", "response_a": "Three.", "response_b": "A cat has four legs."}]


def _columns(rows) -> tuple[list[str], list[str], list[str]]:
    return ([text(r, "prompt") for r in rows], [text(r, "response_a") for r in rows],
            [text(r, "response_b") for r in rows])


class GramPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.models.reward.gram import GenerativeRewardModel

        self.model = GenerativeRewardModel.load(str(model_dir))

    def predict(self, rows, params) -> list[dict]:
        prompts, a, b = _columns(rows)
        out = self.model.prob_first_better(prompts, a, b, batch_size=int(params["batch_size"]))
        p1, p2 = out["p_order1"].double(), out["p_order2"].double()
        tiny = torch.finfo(torch.float64).tiny
        reward_a = 0.5 * (p1.clamp_min(tiny).log() + p2.clamp_min(tiny).log())
        reward_b = 0.5 * ((1 - p1).clamp_min(tiny).log() + (1 - p2).clamp_min(tiny).log())
        return [{"p_a_better": float(p), "reward_a": float(ra), "reward_b": float(rb)}
                for p, ra, rb in zip(out["p"].tolist(), reward_a.tolist(), reward_b.tolist())]


class BTPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.models.reward.bt import BTRewardModel

        self.model = BTRewardModel.load(str(model_dir))

    def predict(self, rows, params) -> list[dict]:
        prompts, a, b = _columns(rows)
        n = len(prompts)
        r = self.model.rewards(prompts * 2, a + b, batch_size=int(params["batch_size"])).double()
        p = torch.sigmoid(r[:n] - r[n:])
        return [{"p_a_better": float(pi), "reward_a": float(ra), "reward_b": float(rb)}
                for pi, ra, rb in zip(p.tolist(), r[:n].tolist(), r[n:].tolist())]


register(Family("gram", GramPredictor, INPUTS, OUTPUTS, example,
                "from pipelines.models.reward.gram import GenerativeRewardModel; "
                "GenerativeRewardModel.load('{path}')", params={"batch_size": 32}))
register(Family("bt", BTPredictor, INPUTS, OUTPUTS, example,
                "from pipelines.models.reward.bt import BTRewardModel; BTRewardModel.load('{path}')",
                params={"batch_size": 32}))
