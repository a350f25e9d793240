"""On-policy rollouts: sample with the KV cache, keep the token ids, re-score log-probabilities.

A rollout is one ``[B, Lq + Lr]`` tensor: the left-padded query (``bos`` + the pipeline's prompt
template, exactly as ``pipelines.evaluation.sampling`` encodes it) followed by the sampled response,
whose tokens count up to and including the first eos. Position ids follow the attention mask as
HF ``generate`` does, so the log-probabilities recomputed here equal the sampling ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from pipelines.data.template import format_prompt
from pipelines.evaluation.sampling import left_pad


@dataclass
class Rollout:
    prompts: list[str]
    input_ids: torch.Tensor       # [B, Lq + Lr]
    attention_mask: torch.Tensor  # [B, Lq + Lr]; 1 on query tokens and on counted response tokens
    response_mask: torch.Tensor   # [B, Lr] float; 1 on response tokens up to and including eos
    query_len: int                # Lq, the padded query width
    texts: list[str]              # decoded responses (eos and specials removed, stripped)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.query_len:]

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(1)


def encode_queries(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [bos + tokenizer(format_prompt(p), add_special_tokens=False)["input_ids"] for p in prompts]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions count real tokens only (left padding does not shift them), as in HF generate."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@torch.no_grad()
def sample_rollout(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
                   seed: int = 0) -> Rollout:
    """Sample one response per prompt (``temperature`` 0 = greedy) with HF ``generate`` and its KV cache.

    Sampling runs in a forked RNG seeded with ``seed``: the result depends on (model, prompts,
    seed, settings) only and the caller's RNG is untouched.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    eos, pad = tokenizer.eos_token_id, _pad_id(tokenizer)
    query_ids, query_mask = left_pad(encode_queries(tokenizer, prompts), pad)
    kwargs = dict(max_new_tokens=int(max_new_tokens), eos_token_id=eos, pad_token_id=pad, use_cache=True)
    if temperature > 0:  # plain ancestral sampling: no top-k / top-p truncation
        kwargs.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            out = model.generate(input_ids=query_ids, attention_mask=query_mask, **kwargs)
    finally:
        model.train(was_training)
    response = out[:, query_ids.shape[1]:]
    is_eos = (response == eos).long()
    after_first_eos = (is_eos.cumsum(1) - is_eos) > 0
    response_mask = (~after_first_eos).float()
    response = response.masked_fill(after_first_eos, pad)
    texts = []
    for row, m in zip(response.tolist(), response_mask.tolist()):
        kept = [t for t, keep in zip(row, m) if keep and t != eos]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return Rollout(prompts=list(prompts), input_ids=torch.cat([query_ids, response], 1),
                   attention_mask=torch.cat([query_mask, response_mask.long()], 1),
                   response_mask=response_mask, query_len=query_ids.shape[1], texts=texts)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, query_len: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities ``[B, Lr]`` of the response tokens under ``logits`` of the whole sequence."""
    scaled = logits[:, query_len - 1:-1, :].float()
    if temperature > 0 and temperature != 1.0:
        scaled = scaled / temperature
    return torch.gather(F.log_softmax(scaled, dim=-1), 2, input_ids[:, query_len:, None]).squeeze(-1)


def forward_logprobs(model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Response log-probabilities under ``model`` (grad flows when the caller allows it)."""
    out = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                position_ids=position_ids(rollout.attention_mask))
    return token_logprobs(out.logits, rollout.input_ids, rollout.query_len, temperature) * rollout.response_mask


def sequence_kl(logp_policy: torch.Tensor, logp_ref: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-sample Monte-Carlo KL estimate: sum over response tokens of log pi - log pi_ref."""
    return ((logp_policy - logp_ref) * response_mask).sum(1)
