"""Token-weighted perplexity, the pipeline's intrinsic LM quality metric."""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from pipelines.data.lm_data import IGNORE_INDEX, collate_pad


@torch.no_grad()
def perplexity(
    model,
    blocks_or_examples: Union[torch.Tensor, Sequence[dict]],
    batch_size: int = 8,
    pad_id: int = 0,
) -> float:
    """``exp`` of the mean next-token NLL over every target token of the data.

    Accepts packed blocks (LongTensor ``[n, block]``, every token a target) or SFT-style
    examples (dicts with ``input_ids`` and optional ``labels``; ``-100`` labels ignored).
    Each token weighs the same, whatever batch it lands in.
    """
    was_training = model.training
    model.eval()
    total_nll, total_tokens = 0.0, 0
    n = len(blocks_or_examples)
    for start in range(0, n, batch_size):
        chunk = blocks_or_examples[start : start + batch_size]
        if torch.is_tensor(chunk):
            input_ids, attention_mask, labels = chunk, None, chunk
        else:
            batch = collate_pad(list(chunk), pad_id)
            input_ids, attention_mask, labels = (
                batch["input_ids"], batch["attention_mask"], batch["labels"],
            )
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        total_nll += float(
            F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        )
        total_tokens += int((targets != IGNORE_INDEX).sum())
    model.train(was_training)
    if total_tokens == 0:
        raise ValueError("no target tokens to score")
    return math.exp(total_nll / total_tokens)
