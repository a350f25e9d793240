"""Text generation from the LiSA policy, whose shared-attention layers plain transformers cannot load.

Request: prompt (a user question; the project's chat template is applied). Response: `response`,
greedy by default (`temperature` 0), as the policy evaluation decodes.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.serving import Column, Family, register, text


class LisaPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.compression.io import load_lisa_model
        from pipelines.models.tokenizer import load_tokenizer

        self.model, self.tokenizer = load_lisa_model(model_dir), load_tokenizer(str(model_dir))

    def predict(self, rows, params) -> list[dict]:
        from pipelines.evaluation.sampling import generate_responses

        prompts = [text(r, "prompt") for r in rows]
        out = generate_responses(self.model, self.tokenizer, prompts, max_new_tokens=int(params["max_new_tokens"]),
                                 temperature=float(params["temperature"]), seed=int(params["seed"]),
                                 progress=False, across_ranks=False)
        return [{"response": r} for r in out]


def example(_model_dir: Path) -> list[dict]:
    return [{"prompt": "Name a fruit that is yellow."}, {"prompt": "How many legs does a cat have?"}]


register(Family("lisa", LisaPredictor, (Column("prompt", "string"),), (Column("response", "string"),), example,
                "from pipelines.compression.io import load_lisa_model; "
                "from pipelines.models.tokenizer import load_tokenizer; "
                "model, tokenizer = load_lisa_model('{path}'), load_tokenizer('{path}')",
                params={"max_new_tokens": 32, "temperature": 0.0, "seed": 0}))
