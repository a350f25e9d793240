"""Turn text into model-ready tensors: packed LM blocks and masked SFT examples."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from pipelines.data.template import format_prompt

IGNORE_INDEX = -100


def _encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without any special tokens."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def pack_corpus(texts: Iterable[str], tokenizer, block_size: int) -> torch.Tensor:
    """Concatenate ``bos + tokens + eos`` for every text and cut into full blocks.

    The trailing partial block is dropped. Returns a LongTensor ``[n_blocks, block_size]``.
    """
    if block_size < 2:
        raise ValueError("block_size must be >= 2")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        if not batch:
            return
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            stream.append(bos)
            stream.extend(ids)
            stream.append(eos)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= 1024:
            flush()
    flush()
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one block of {block_size}")
    return torch.tensor(stream[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


def collate_blocks(batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack packed blocks into an LM batch (every position is a target)."""
    input_ids = torch.stack(list(batch))
    return {"input_ids": input_ids, "labels": input_ids.clone()}


def sft_examples(records: Iterable[dict], tokenizer, max_length: int) -> list[dict]:
    """Build supervised fine-tuning examples with the prompt masked out of the loss.

    Layout: ``bos + tok(format_prompt(prompt)) + tok(" " + response) + eos``; labels are
    ``-100`` over bos and the prompt. Truncation rule when longer than ``max_length``:
    the response part (response tokens, then eos) is cut from the right, keeping the whole
    prompt; if ``bos + prompt`` alone exceeds ``max_length``, only its last ``max_length``
    tokens are kept (the assistant cue survives) and there are no target tokens.
    An empty response still yields one target: eos.
    """
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for rec in records:
        prompt = rec.get("prompt") or ""
        response = (rec.get("response") or "").strip()
        prompt_ids = [bos] + _encode(tokenizer, format_prompt(prompt))
        response_ids = (_encode(tokenizer, " " + response) if response else []) + [eos]
        if len(prompt_ids) >= max_length:
            prompt_ids = prompt_ids[-max_length:]
            response_ids = []
        else:
            response_ids = response_ids[: max_length - len(prompt_ids)]
        input_ids = prompt_ids + response_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
        out.append(
            {
                "input_ids": torch.tensor(input_ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long),
            }
        )
    return out


def collate_pad(batch: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest one; padded labels are ``-100``."""
    if not batch:
        raise ValueError("empty batch")
    width = max(len(ex["input_ids"]) for ex in batch)
    n = len(batch)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    for i, ex in enumerate(batch):
        ids = torch.as_tensor(ex["input_ids"], dtype=torch.long)
        k = len(ids)
        input_ids[i, :k] = ids
        attention_mask[i, :k] = 1
        lab = ex.get("labels")
        labels[i, :k] = ids if lab is None else torch.as_tensor(lab, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
