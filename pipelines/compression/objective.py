"""The language-modelling objective LiSA is trained, selected and analysed with, on token-id lists.

Why one place: training (`train`), layer selection (`select`) and sensitivity (`analysis`) must
measure the same loss, or "perplexity within budget" would compare different things.

* Llama (causal LM): next-token cross-entropy over real (non-padding) tokens.
* BERT: masked-LM cross-entropy, which needs an MLM head (``BertForMaskedLM``) and a mask token
  id (argument, else ``config.mask_token_id``). Masked positions are 15% of the real tokens (at
  least one per sequence), drawn from a generator seeded per batch, and all replaced by the mask
  token; the same batches get the same masks on every call, so a compressed model and its base
  are compared on identical inputs. A bare ``BertModel`` has no LM loss: train it with attention
  distillation only (``lm_weight=0``); layer selection then holds it to an embedding-similarity
  budget instead of perplexity (`budget.py`).

Perplexity = exp(total NLL / number of predicted tokens), token-weighted across batches.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.compression.families import family_of

MLM_PROBABILITY = 0.15


def pad_id(model: nn.Module) -> int:
    value = getattr(model.config, "pad_token_id", None)
    return 0 if value is None else int(value)


def make_batches(sequences: Sequence[Sequence[int]], batch_size: int, pad: int,
                 order: Sequence[int] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded (input_ids, attention_mask) batches, in ``order`` (default: as given)."""
    if not sequences:
        raise ValueError("no sequences")
    if any(len(s) < 2 for s in sequences):
        raise ValueError("every sequence needs at least 2 tokens")
    order = list(range(len(sequences))) if order is None else list(order)
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [list(sequences[i]) for i in order[start : start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        batches.append((ids, mask))
    return batches


def _mask_token(model: nn.Module, mask_token_id: int | None) -> int:
    token = mask_token_id if mask_token_id is not None else getattr(model.config, "mask_token_id", None)
    if token is None:
        raise ValueError("BERT masked-LM loss needs mask_token_id (the config has none)")
    return int(token)


def mlm_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_token: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted input ids, boolean positions to predict), reproducible for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    real = attention_mask.bool()
    chosen = (torch.rand(input_ids.shape, generator=generator) < MLM_PROBABILITY) & real
    for row in range(input_ids.shape[0]):
        if not chosen[row].any() and real[row].any():
            candidates = real[row].nonzero().flatten()
            pick = torch.randint(len(candidates), (1,), generator=generator)
            chosen[row, candidates[pick]] = True
    return input_ids.masked_fill(chosen, mask_token), chosen


def lm_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
              mask_token_id: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids to feed the model, targets aligned with its logits; -100 = not predicted)."""
    if family_of(model).name == "llama":
        nxt = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
        return input_ids, torch.cat([nxt, torch.full_like(input_ids[:, :1], -100)], dim=1)
    corrupted, chosen = mlm_inputs(input_ids, attention_mask, _mask_token(model, mask_token_id), seed)
    return corrupted, input_ids.masked_fill(~chosen, -100)


def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """A plain forward (no KV cache built for causal LMs)."""
    extra = {"use_cache": False} if family_of(model).name == "llama" else {}
    return model(input_ids=input_ids, attention_mask=attention_mask, **extra)


def nll_from_logits(model: nn.Module, output, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed NLL over targets != -100, their number)."""
    logits = getattr(output, "logits", None)
    if logits is None:
        raise ValueError(f"{type(model).__name__} has no LM head: use BertForMaskedLM, or train with "
                         "attention distillation only (lm_weight=0)")
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                          ignore_index=-100, reduction="sum")
    return nll, int((targets != -100).sum())


def lm_nll(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
           mask_token_id: int | None = None, seed: int = 0) -> tuple[torch.Tensor, int]:
    """(summed negative log-likelihood, number of predicted tokens) for one batch."""
    inputs, targets = lm_inputs(model, input_ids, attention_mask, mask_token_id=mask_token_id, seed=seed)
    return nll_from_logits(model, forward(model, inputs, attention_mask), targets)


@torch.no_grad()
def perplexity(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 8, *,
               mask_token_id: int | None = None, seed: int = 0) -> float:
    """Token-weighted perplexity of ``model`` on ``sequences`` (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for b, (ids, mask) in enumerate(make_batches(sequences, batch_size, pad_id(model))):
            nll, n = lm_nll(model, ids, mask, mask_token_id=mask_token_id, seed=seed + b)
            total, count = total + float(nll), count + n
    finally:
        model.train(was_training)
    return math.exp(total / max(count, 1))
