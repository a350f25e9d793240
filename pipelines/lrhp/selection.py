"""Preference data selection: pick K pool pairs for a target kind of preference.

- ``similarity_scores``: a pool item's score is the mean cosine similarity to its ``knn`` most similar
  target items (a kNN density estimate of "looks like the target"); LRHP uses pair vectors, the
  prompt-embedding baseline uses the base LM's mean-pooled prompt states.
- ``top_k``: the K highest scores (ties by pool index), so exactly K distinct pairs, deterministically.
- ``random_k``: K distinct indices from a seeded generator. RM-gap selection is ``top_k`` over the
  reward model's score gap r(chosen) - r(rejected) (the pairs it is surest about).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.models.reward.batching import map_sorted, pad_id_of
from pipelines.models.reward.judge import encode


def similarity_scores(pool: torch.Tensor, target: torch.Tensor, knn: int) -> np.ndarray:
    """Per pool row: mean of its ``knn`` largest cosine similarities to the target rows."""
    if target.shape[0] == 0:
        raise ValueError("selection needs at least one target item")
    sim = F.normalize(pool.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T
    k = max(1, min(int(knn), target.shape[0]))
    return sim.topk(k, dim=1).values.mean(dim=1).double().numpy()


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest scores, ties broken by the lower index; exactly ``k`` distinct ones."""
    scores = np.asarray(scores, dtype=np.float64)
    _check_k(k, len(scores))
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [int(i) for i in order[:k]]


def random_k(n: int, k: int, seed: int) -> list[int]:
    """``k`` distinct indices of ``range(n)`` drawn with a seeded generator."""
    _check_k(k, n)
    return [int(i) for i in np.random.default_rng(seed).choice(n, size=k, replace=False)]


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"cannot select K={k} of {n} pool pairs (1 <= K <= pool size)")


@torch.no_grad()
def prompt_embeddings(causal_lm, tokenizer, prompts: Sequence[str], batch_size: int = 64,
                      max_length: int = 128) -> torch.Tensor:
    """Normalised mean of the final hidden states over each prompt's tokens (the plain-embedding baseline)."""
    unique = sorted(set(prompts))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    seqs = [(bos + encode(tokenizer, " " + p.strip()))[-max_length:] for p in unique]
    base = getattr(causal_lm, "base_model", causal_lm)
    was_training = causal_lm.training
    causal_lm.eval()

    def pooled(ids, mask):
        hidden = base(input_ids=ids, attention_mask=mask, use_cache=False)[0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)

    try:
        vectors = map_sorted(seqs, batch_size, pad_id_of(tokenizer), pooled)
    finally:
        causal_lm.train(was_training)
    row = {p: i for i, p in enumerate(unique)}
    return vectors[torch.tensor([row[p] for p in prompts], dtype=torch.long)]
