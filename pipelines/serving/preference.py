"""LRHP preference representations: a preference pair in, its normalised vector and preference out.

Request: prompt, response_a, response_b. Response: `p_a_better`, the encoder's preference head on
the pair in the order given (sigmoid of its logit), and `vector`, the pair's L2-normalised
representation (`lrhp.dim` numbers) that selection and margin prediction use.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipelines.serving import Column, Family, register, text
from pipelines.serving.rewards import example


class PairEncoderPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.models.preference.encoder import PairEncoder

        self.model = PairEncoder.load(model_dir)

    def predict(self, rows, params) -> list[dict]:
        prompts = [text(r, "prompt") for r in rows]
        a, b = [text(r, "response_a") for r in rows], [text(r, "response_b") for r in rows]
        z = self.model.embed(prompts, a, b, batch_size=int(params["batch_size"]))
        with torch.no_grad():
            p = torch.sigmoid(self.model.first_preferred_logit(z)).double()
        return [{"p_a_better": float(pi), "vector": [float(x) for x in zi]} for pi, zi in zip(p.tolist(), z.double())]


register(Family("lrhp", PairEncoderPredictor,
                (Column("prompt", "string"), Column("response_a", "string"), Column("response_b", "string")),
                (Column("p_a_better", "double"), Column("vector", "double_array")), example,
                "from pipelines.models.preference.encoder import PairEncoder; PairEncoder.load('{path}')",
                params={"batch_size": 32}))
