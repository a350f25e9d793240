"""GRAM and BT as registry scorers: load, score, compare, pick best-of-n, fine-tune.

GRAM is pairwise, so its `score` is the swap-averaged probability that a response beats a fixed
reference response to the same prompt (the SFT policy's greedy response, given as `references` in
the load context), as GRAM's authors do for RL. BT's score is its scalar reward.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import torch

from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_loss, collate_bt
from pipelines.models.reward.data import collate_judge, preference_examples
from pipelines.models.reward.gram import CONFIG_NAME, GenerativeRewardModel
from pipelines.models.reward.losses import gram_stage2_loss


class GramScorer:
    """A GRAM judge with its batch size and (for `score`) the reference response of each prompt."""

    def __init__(self, model: GenerativeRewardModel, batch_size: int = 32, references: Mapping[str, str] | None = None):
        self.model, self.batch_size, self.references = model, int(batch_size), references

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """P(response beats the prompt's reference response), swap-averaged, in [0, 1]."""
        if self.references is None:
            raise ValueError("GRAM's score needs reference responses (load it with references=...)")
        ensure = getattr(self.references, "ensure", None)
        if ensure is not None:
            ensure(prompts)
        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise KeyError(f"no GRAM reference response for {len(missing)} prompts, e.g. {missing[0]!r}")
        refs = [self.references[p] for p in prompts]
        return self.model.prob_first_better(list(prompts), list(responses), refs, batch_size=self.batch_size)["p"].float()

    def prob_first_better(self, prompts, a, b) -> torch.Tensor:
        return self.model.prob_first_better(list(prompts), list(a), list(b), batch_size=self.batch_size)["p"]

    def choose_best(self, prompts, candidates) -> list[int]:
        """Knockout winner per prompt."""
        return self.model.best_of_n_knockout_many(list(prompts), [list(c) for c in candidates],
                                                  batch_size=self.batch_size)


class BTScorer:
    """A Bradley-Terry reward model with its batch size."""

    def __init__(self, model: BTRewardModel, batch_size: int = 32):
        self.model, self.batch_size = model, int(batch_size)

    def score(self, prompts, responses) -> torch.Tensor:
        return self.model.rewards(list(prompts), list(responses), batch_size=self.batch_size).float()

    def prob_first_better(self, prompts, a, b) -> torch.Tensor:
        return self.model.prob_first_better(list(prompts), list(a), list(b), batch_size=self.batch_size)["p"]

    def choose_best(self, prompts, candidates) -> list[int]:
        """Highest reward per prompt (first on ties)."""
        return self.model.best_of_n_argmax_many(list(prompts), [list(c) for c in candidates],
                                                batch_size=self.batch_size)


def load_gram(model_dir: Path, batch_size: int = 32, references: Mapping[str, str] | None = None,
              max_length: int | None = None, **_) -> GramScorer:
    """A saved GRAM; a plain causal-LM folder (no gram_config.json) gives an untrained judge on that LM."""
    model_dir = Path(model_dir)
    if (model_dir / CONFIG_NAME).is_file():
        model = GenerativeRewardModel.load(str(model_dir), max_length)
    else:
        from pipelines.models.causal_lm import load_causal_lm
        from pipelines.models.tokenizer import load_tokenizer

        model = GenerativeRewardModel(load_causal_lm(str(model_dir)), load_tokenizer(str(model_dir)), max_length)
    return GramScorer(model.eval(), batch_size, references)


def load_bt(model_dir: Path, batch_size: int = 32, max_length: int | None = None, **_) -> BTScorer:
    return BTScorer(BTRewardModel.load(str(model_dir), max_length).eval(), batch_size)


def finetune_gram(scorer: GramScorer, records: list[dict], cfg, seed: int = 0, label_smoothing: float = 0.0) -> None:
    """GRAM stage 2 (label-smoothed A/B judging) on `records`, in place, then eval mode."""
    from pipelines.training.loop import train

    rm = scorer.model
    train(rm, preference_examples(records, rm.tokenizer, rm.max_length, seed=seed),
          partial(gram_stage2_loss, eps=label_smoothing), cfg, collate_fn=partial(collate_judge, pad_id=rm.pad_id),
          progress=False)
    rm.eval()


def finetune_bt(scorer: BTScorer, records: list[dict], cfg, seed: int = 0, **_) -> None:
    """Bradley-Terry loss on `records`, in place, then eval mode."""
    from pipelines.training.loop import train

    rm = scorer.model
    train(rm, bt_examples(records, rm.tokenizer, rm.max_length), bt_loss, cfg,
          collate_fn=partial(collate_bt, pad_id=rm.pad_id), progress=False)
    rm.eval()
