"""What the greedy layer selection holds within budget: perplexity, or embedding similarity.

Why two: a model with an LM head (``LlamaForCausalLM``, ``BertForMaskedLM``) is judged by validation
perplexity, accepted while ppl <= (1 + budget) * base ppl. A head-less encoder (a bare ``BertModel``,
the usual form of sentence-encoder checkpoints) has no LM loss and so no perplexity; what it produces
is hidden states, so it is judged by how close they stay to the original model's on held-out text:

* sentence embedding = final hidden states mean-pooled over the attention mask (what sentence
  encoders use; the pooler output is skipped, many checkpoints ship it untrained);
* ``similarity`` = mean over sequences of the cosine similarity between the compressed and the
  original model's sentence embeddings; a layer is accepted while it stays >= ``min_similarity``.
  Also reported: the lowest per-sequence similarity and the mean per-token cosine similarity of the
  final hidden states (real tokens only).

``unrelated_similarity`` (the original model's mean cosine similarity between embeddings of
*different* sequences) says how much of the cosine is a direction every embedding shares: a
threshold below it would accept almost any replacement, so read the similarities against it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.compression.objective import forward, make_batches, pad_id, perplexity

DEFAULT_MIN_SIMILARITY = 0.98
PERPLEXITY, SIMILARITY = "ppl", "similarity"


def has_lm_head(model: nn.Module) -> bool:
    """True when the model produces LM logits, so perplexity can be measured."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter is not None and getter() is not None


@dataclass
class Budget:
    """A selection budget: ``measure(model)`` gives {metric: value, ...extras}; ``accepts(value)`` decides."""

    metric: str  # PERPLEXITY or SIMILARITY
    base: float  # the original model's value (its perplexity; 1.0 for similarity)
    threshold: float
    measure: Callable[[nn.Module], dict]
    reference: dict = field(default_factory=dict)  # facts about the original model (similarity only)

    def accepts(self, value: float) -> bool:
        return value <= self.threshold if self.metric == PERPLEXITY else value >= self.threshold


def check_min_similarity(value: float) -> float:
    """A cosine threshold lies in [-1, 1]; anything else is a typo that would accept all or nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
        raise ValueError(f"min_similarity must be a number in [-1, 1], got {value!r}")
    return float(value)


def _hidden(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Final hidden states of the model's transformer body (heads, if any, are skipped)."""
    return forward(model.base_model, ids, mask).last_hidden_state.float()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d) -> (B, d), the mean over real (mask == 1) positions."""
    weights = mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@torch.no_grad()
def hidden_states(model: nn.Module, batches: list) -> list[torch.Tensor]:
    """Final hidden states per batch, in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        return [_hidden(model, ids, mask) for ids, mask in batches]
    finally:
        model.train(was_training)


def embedding_similarity(model: nn.Module, batches: list, reference: list[torch.Tensor]) -> dict:
    """{"similarity", "min_similarity", "token_similarity"} of ``model`` against reference hidden states."""
    pooled, tokens, token_count = [], 0.0, 0
    for (ids, mask), ref, hid in zip(batches, reference, hidden_states(model, batches)):
        pooled.append(F.cosine_similarity(mean_pool(hid, mask), mean_pool(ref, mask), dim=-1))
        real = mask.bool()
        tokens += float(F.cosine_similarity(hid, ref, dim=-1)[real].sum())
        token_count += int(real.sum())
    per_seq = torch.cat(pooled)
    return {SIMILARITY: float(per_seq.mean()), "min_similarity": float(per_seq.min()),
            "token_similarity": tokens / max(token_count, 1)}


def unrelated_similarity(batches: list, reference: list[torch.Tensor]) -> float:
    """Mean cosine between different sequences' reference embeddings (the shared-direction floor)."""
    pooled = torch.cat([mean_pool(ref, mask) for (_, mask), ref in zip(batches, reference)])
    if len(pooled) < 2:
        return math.nan
    unit = F.normalize(pooled, dim=-1)
    sims = unit @ unit.T
    n = len(pooled)
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def similarity_budget(model: nn.Module, val: Sequence[Sequence[int]], min_similarity: float,
                      batch_size: int) -> Budget:
    """Judge a compressed copy by its sentence embeddings against ``model``'s on ``val``."""
    threshold = check_min_similarity(min_similarity)
    batches = make_batches(val, batch_size, pad_id(model))
    reference = hidden_states(model, batches)
    facts = {"unrelated_similarity": unrelated_similarity(batches, reference), "n_sequences": len(val)}
    return Budget(SIMILARITY, 1.0, threshold, lambda m: embedding_similarity(m, batches, reference), facts)


def perplexity_budget(model: nn.Module, val: Sequence[Sequence[int]], budget: float, batch_size: int,
                      mask_token_id: int | None) -> Budget:
    """Judge a compressed copy by validation perplexity, within (1 + budget) of ``model``'s."""
    def measure(m: nn.Module) -> dict:
        return {PERPLEXITY: perplexity(m, val, batch_size=batch_size, mask_token_id=mask_token_id)}

    base = measure(model)[PERPLEXITY]
    return Budget(PERPLEXITY, base, (1.0 + budget) * base, measure)


def budget_for(model: nn.Module, val: Sequence[Sequence[int]], *, budget: float, min_similarity: float,
               batch_size: int, mask_token_id: int | None = None) -> Budget:
    """Perplexity budget when the model has an LM head, embedding-similarity budget otherwise."""
    if has_lm_head(model):
        return perplexity_budget(model, val, budget, batch_size, mask_token_id)
    return similarity_budget(model, val, min_similarity, batch_size)
