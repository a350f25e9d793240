"""Greedy choice of which layers LiSA replaces, under a perplexity budget.

Why greedy from the top: deep layers are usually the most redundant and the cheapest to replace,
and each accepted replacement changes what the layers below it feed into, so candidates are tried
one at a time with everything accepted so far in place.

For l = L-1 down to 1 (layer 0 is never replaced): copy the current model, add LiSA at l, train the
LiSA parameters briefly (all of them, earlier accepted ones included), measure validation
perplexity, and keep the copy iff ppl <= (1 + budget) * base ppl; otherwise drop it (revert).
With ``align_heads`` (modes with FFN_heads) each FFN starts from the best head matching measured
on the base model's first validation batch (`analysis.layer_pair_similarity`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from pipelines.compression.analysis import head_permutations, layer_pair_similarity
from pipelines.compression.families import family_of
from pipelines.compression.lisa import apply_lisa
from pipelines.compression.objective import make_batches, pad_id, perplexity
from pipelines.compression.train import LisaTrainConfig, train_lisa


@dataclass
class Selection:
    """accepted layers (descending), per-candidate log, base ppl, and the compressed model."""

    layers: list[int]
    log: list[dict] = field(default_factory=list)
    base_ppl: float = float("nan")
    model: nn.Module | None = None


def select_layers(model: nn.Module, train_sequences: Sequence[Sequence[int]], val_sequences: Sequence[Sequence[int]],
                  *, budget: float = 0.02, rank: int | None = None, mode: str = "full",
                  train_config: LisaTrainConfig | None = None, align_heads: bool = True,
                  eval_batch_size: int = 8) -> Selection:
    """Greedy deepest-first selection; ``model`` itself is left untouched.

    Log rows: {"layer", "ppl", "threshold", "accepted"}. The returned model has LiSA at the accepted
    layers (or is an unmodified copy if none was accepted).
    """
    cfg = train_config or LisaTrainConfig(max_steps=50, progress=False)
    blocks = family_of(model).layers(model)
    kw = dict(batch_size=eval_batch_size, mask_token_id=cfg.mask_token_id)
    base_ppl = perplexity(model, val_sequences, **kw)
    threshold = (1.0 + budget) * base_ppl
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
        ppl = perplexity(trial, val_sequences, **kw)
        ok = ppl <= threshold
        log.append({"layer": layer, "ppl": ppl, "threshold": threshold, "accepted": ok})
        if ok:
            current = trial
            accepted.append(layer)
    return Selection(layers=accepted, log=log, base_ppl=base_ppl, model=current)
