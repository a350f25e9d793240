"""Sample assistant responses for prompts, reproducibly, with the pipeline's template."""

from __future__ import annotations

import sys
from typing import Optional

import torch
from tqdm.auto import tqdm

from pipelines.data.template import format_prompt
from pipelines.training.distributed import gather, shard


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding keeps every prompt's last token at the same position for generate."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


@torch.no_grad()
def generate_responses(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
    across_ranks: bool = True,
) -> list[str]:
    """Generate one response per prompt; returns the decoded response text, stripped.

    ``temperature == 0`` means greedy decoding. Sampling for batch ``b`` is seeded with
    ``seed + b`` inside a forked RNG, so results depend only on (model, prompts, seed,
    batch_size, settings), never on the caller's RNG state, and the caller's RNG is untouched.
    Under several ranks each rank generates a contiguous block of whole batches (same batch
    boundaries and seeds) and every rank gets all responses back in prompt order: the result
    does not depend on the number of ranks. ``across_ranks=False`` keeps the work on this rank
    (for callers whose ranks do not all call at the same time with the same prompts).
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    was_training = model.training
    model.eval()
    batches = list(enumerate(range(0, len(prompts), batch_size)))
    mine = shard(batches) if across_ranks else batches
    local: list[list[str]] = []
    for b, start in tqdm(mine, desc="generate", disable=not progress, file=sys.stderr):
        chunk = prompts[start : start + batch_size]
        rows = [
            ([bos] if bos is not None else [])
            + tokenizer(format_prompt(p), add_special_tokens=False)["input_ids"]
            for p in chunk
        ]
        input_ids, attention_mask = left_pad(rows, pad)
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, use_cache=True)
        if temperature > 0:  # top-k / top-p only mean something when sampling
            kwargs.update(do_sample=True, temperature=float(temperature), top_k=int(top_k or 0), top_p=1.0)
        else:
            kwargs.update(do_sample=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + b)
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        texts = []
        for row in out[:, input_ids.shape[1] :].tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
        local.append(texts)
    model.train(was_training)
    return [text for texts in (gather(local) if across_ranks else local) for text in texts]
