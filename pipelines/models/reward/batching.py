"""Right padding and length-sorted batching shared by the reward models."""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def pad_right(seqs: Sequence, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) right-padded to the longest sequence.

    Right padding is exact for causal LMs: real tokens never attend to later pads, and
    positions of real tokens do not move. Readers take the last real token.
    """
    if not seqs:
        raise ValueError("empty batch")
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = torch.as_tensor(s, dtype=torch.long)
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def map_sorted(
    seqs: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply ``fn(input_ids, attention_mask)`` in batches of similar length, input order kept.

    Sorting by length (ties by index, so deterministic) cuts padding work a lot when
    lengths vary; outputs are concatenated along dim 0 and put back in input order.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
    chunks = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunks.append(fn(*pad_right([seqs[i] for i in idx], pad_id)))
    if not chunks:
        raise ValueError("no inputs")
    out = torch.cat(chunks, dim=0)
    result = torch.empty_like(out)
    result[torch.tensor(order, dtype=torch.long)] = out
    return result


def pad_id_of(tokenizer) -> int:
    """Pad id for batching (eos, then 0, if the tokenizer has no pad token)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def map_sorted_eval(module, seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int):
    """`map_sorted` over `module.forward` in eval mode, the module's training flag restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        return map_sorted(seqs, batch_size, pad_id, module.forward)
    finally:
        module.train(was_training)
