"""Inference throughput of causal LMs on CPU: prefill and greedy-decode tokens/s, several models side by side.

Shared by `benchmarks/lisa_throughput.py` and the `lisa` stage, so both report the same quantity:

* prefill tokens/s: batch x seq_len / seconds of one forward over the prompt (KV cache built,
  logits for the last position only);
* decode tokens/s: batch x new tokens / seconds of a greedy loop with a DynamicCache after that
  prefill (prefill time excluded).

Each measurement: ``warmup`` untimed runs, then ``repeats`` timed runs, the models alternating so
machine noise hits all of them alike; the median is reported. Prompts are random token ids from a
seeded generator (speed does not depend on the values). ``threads`` fixes torch's intra-op thread
count for the measurement and restores the previous value afterwards.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping, Sequence

import torch
from torch import nn


@torch.inference_mode()
def prefill_seconds(model: nn.Module, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(ids, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - start


@torch.inference_mode()
def decode_seconds(model: nn.Module, ids: torch.Tensor, new_tokens: int) -> float:
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(new_tokens):
        out = model(token, past_key_values=cache, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[nn.Module], float], models: Sequence[nn.Module], warmup: int = 1,
                   repeats: int = 3) -> list[float]:
    """Median seconds of ``fn(model)`` per model, runs alternating between the models."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for model in models:
            fn(model)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for i, model in enumerate(models):
            times[i].append(fn(model))
    return [statistics.median(t) for t in times]


def measure_throughput(models: Mapping[str, nn.Module], seq_lens: Sequence[int], *, batch_size: int = 1,
                       decode_tokens: int = 32, warmup: int = 1, repeats: int = 3, threads: int | None = None,
                       seed: int = 0) -> list[dict]:
    """One row per sequence length: {"seq_len", "prefill_tok_s": {name: tok/s}, "decode_tok_s": {...}}.

    ``models``: name -> causal LM (eval mode). Every model sees the same prompt ids.
    """
    if not models:
        raise ValueError("no models to measure")
    names, group = list(models), list(models.values())
    vocab = min(int(m.config.vocab_size) for m in group)
    low = 3 if vocab > 3 else 0  # skip the usual special ids (pad/bos/eos) when the vocabulary allows
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for seq_len in seq_lens:
            ids = torch.randint(low, vocab, (batch_size, int(seq_len)), generator=gen)
            prefill = median_seconds(lambda m: prefill_seconds(m, ids), group, warmup, repeats)
            decode = median_seconds(lambda m: decode_seconds(m, ids, decode_tokens), group, warmup, repeats)
            tokens, new = batch_size * int(seq_len), batch_size * decode_tokens
            rows.append({
                "seq_len": int(seq_len),
                "prefill_tok_s": {n: tokens / s for n, s in zip(names, prefill)},
                "decode_tok_s": {n: new / s for n, s in zip(names, decode)},
            })
    finally:
        torch.set_num_threads(before)
    return rows
