"""Reward models: GRAM (generative A/B judge), Bradley-Terry (`bt`), their data, losses and selection helpers.

Every reward model is also an entry of `registry` (name -> load as a scorer); stages go through it.
"""

from pipelines.models.reward.data import collate_judge, preference_examples, unlabeled_pair_examples
from pipelines.models.reward.gram import GenerativeRewardModel
from pipelines.models.reward.judge import candidate_token_ids, render_judge
from pipelines.models.reward.losses import gram_stage1_loss, gram_stage2_loss, label_smoothed_pair_loss

__all__ = [
    "GenerativeRewardModel",
    "candidate_token_ids",
    "collate_judge",
    "gram_stage1_loss",
    "gram_stage2_loss",
    "label_smoothed_pair_loss",
    "preference_examples",
    "render_judge",
    "unlabeled_pair_examples",
]
