"""Greedy choice of which layers LiSA replaces, under a perplexity (or embedding-similarity) budget.

Why greedy from the top: deep layers are usually the most redundant and the cheapest to replace,
and each accepted replacement changes what the layers below it feed into, so candidates are tried
one at a time with everything accepted so far in place.

For l = L-1 down to 1 (layer 0 is never replaced): copy the current model, add LiSA at l, train the
LiSA parameters briefly (all of them, earlier accepted ones included), measure validation
perplexity, and keep the copy iff ppl <= (1 + budget) * base ppl; otherwise drop it (revert).
A model without an LM head (a bare ``BertModel``) has no perplexity: it keeps the copy iff the mean
cosine similarity of its sentence embeddings to the original's stays >= ``min_similarity``
(`budget.py`); its log rows carry "similarity", "min_similarity" and "token_similarity" instead.
With ``align_heads`` (modes with FFN_heads) each FFN starts from the best head matching measured
on the base model's first validation batch (`analysis.layer_pair_similarity`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from pipelines.compression.analysis import head_permutations, layer_pair_similarity
from pipelines.compression.budget import DEFAULT_MIN_SIMILARITY, PERPLEXITY, Budget, budget_for, has_lm_head
from pipelines.compression.families import family_of
from pipelines.compression.lisa import apply_lisa
from pipelines.compression.objective import make_batches, pad_id
from pipelines.compression.train import LisaTrainConfig, train_lisa


@dataclass
class Selection:
    """accepted layers (descending), per-candidate log, base ppl (NaN without an LM head), the
    compressed model, and the budget it was held to."""

    layers: list[int]
    log: list[dict] = field(default_factory=list)
    base_ppl: float = float("nan")
    model: nn.Module | None = None
    budget: Budget | None = None


def select_layers(model: nn.Module, train_sequences: Sequence[Sequence[int]], val_sequences: Sequence[Sequence[int]],
                  *, budget: float = 0.02, rank: int | None = None, mode: str = "full",
                  train_config: LisaTrainConfig | None = None, align_heads: bool = True,
                  eval_batch_size: int = 8, min_similarity: float = DEFAULT_MIN_SIMILARITY) -> Selection:
    """Greedy deepest-first selection; ``model`` itself is left untouched.

    Log rows: {"layer", "ppl" (or the similarity measures), "threshold", "accepted"}. The returned
    model has LiSA at the accepted layers (or is an unmodified copy if none was accepted).
    ``budget`` applies to models with an LM head, ``min_similarity`` to those without.
    """
    cfg = train_config or LisaTrainConfig(max_steps=50, progress=False)
    if cfg.lm_weight > 0 and not has_lm_head(model):
        raise ValueError(f"{type(model).__name__} has no LM head, so the LM loss cannot train LiSA on it: "
                         "use attention distillation only (lm_weight=0, distill_weight > 0)")
    blocks = family_of(model).layers(model)
    judge = budget_for(model, val_sequences, budget=budget, min_similarity=min_similarity,
                       batch_size=eval_batch_size, mask_token_id=cfg.mask_token_id)
    permutations = None
    if align_heads and mode in ("full", "align"):
        ids, mask = make_batches(val_sequences, eval_batch_size, pad_id(model))[0]
        permutations = head_permutations(layer_pair_similarity(model, ids, mask))
    teacher = model if cfg.distill_weight > 0 else None
    current, accepted, log = copy.deepcopy(model), [], []
    for layer in range(len(blocks) - 1, 0, -1):
        trial = copy.deepcopy(current)
        apply_lisa(trial, [layer], rank=rank, mode=mode, permutations=permutations, seed=cfg.seed + layer)
        train_lisa(trial, train_sequences, cfg, teacher=teacher)
        measured = judge.measure(trial)
        ok = judge.accepts(measured[judge.metric])
        log.append({"layer": layer, **measured, "threshold": judge.threshold, "accepted": ok})
        if ok:
            current = trial
            accepted.append(layer)
    base_ppl = judge.base if judge.metric == PERPLEXITY else float("nan")
    return Selection(layers=accepted, log=log, base_ppl=base_ppl, model=current, budget=judge)
