"""Held-out evaluation of a policy: the `sft_samples` prompts, sampling with KL, proxy scores, summary.

Every policy (PPO, DPO, best-of-n) is judged on the prompts of the SFT samples pool, against that
pool's SFT samples, with the same sampling settings (`rlhf.eval`), so the numbers compare directly.
GRAM's proxy score needs a reference response per prompt: the SFT policy's greedy one, made on first use.
"""
from __future__ import annotations

import sys
from typing import Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from pipelines.data.world import gold_reward
from pipelines.evaluation.policy_eval import summarize_policy
from pipelines.evaluation.sampling import generate_responses
from pipelines.rlhf.rewards import ReferenceResponses
from pipelines.rlhf.rollout import forward_logprobs, sample_rollout, sequence_kl
from pipelines.training.distributed import gather, shard


def heldout_prompts(pool: Sequence[Mapping]) -> tuple[list[dict], list[list[float]]]:
    """The pool's prompts (id, family, prompt, spec) and the gold rewards of its SFT samples for each."""
    prompts = [{"id": r["id"], "family": r["family"], "prompt": r["prompt"], "spec": r["spec"]} for r in pool]
    return prompts, [list(r["gold"]) for r in pool]


def distinct_prompts(records: Sequence[Mapping], n: int) -> list[str]:
    """The first `n` distinct prompts of `records` (PPO's training prompts)."""
    return list(dict.fromkeys(r["prompt"] for r in records))[:n]


def greedy_references(sft_lm, tokenizer, ev: Mapping) -> ReferenceResponses:
    """GRAM's reference for a prompt: the SFT policy's greedy response, made on first use.

    Made on the rank that needs it: under several ranks PPO scores each rank's own rollouts, so
    the ranks' missing prompts differ and a collective here would not line up."""
    return ReferenceResponses(lambda ps: generate_responses(
        sft_lm, tokenizer, ps, max_new_tokens=int(ev["max_new_tokens"]), temperature=0.0,
        batch_size=int(ev["batch_size"]), progress=False, across_ranks=False))


@torch.no_grad()
def sample_policy(policy, ref_model, tokenizer, prompts: Sequence[Mapping], n_per_prompt: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int = 0, batch_size: int = 64, progress: bool = True,
                  gold_fn: Callable[[dict, str], float] = gold_reward) -> list[dict]:
    """``n_per_prompt`` samples per prompt with their gold reward and KL(policy || ref) estimate.

    The KL estimate is the summed log-ratio of the sampled tokens under both models, both at the
    sampling temperature: an unbiased estimate of the KL between the two sampling distributions.
    Under several ranks each rank samples a contiguous block of whole batches (same boundaries and
    seeds) and every rank gets all rows in order: the rows do not depend on the number of ranks.
    """
    flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n_per_prompt)]
    rows: list[dict] = []
    mine = shard(list(enumerate(range(0, len(flat), batch_size))))
    for b, start in tqdm(mine, desc="policy eval", disable=not progress, file=sys.stderr):
        chunk = flat[start:start + batch_size]
        rollout = sample_rollout(policy, tokenizer, [p["prompt"] for _, p in chunk], max_new_tokens, temperature,
                                 seed=seed * 1_000_003 + b)
        kl = sequence_kl(forward_logprobs(policy, rollout, temperature), forward_logprobs(ref_model, rollout, temperature),
                         rollout.response_mask)
        for (i, p), text, k in zip(chunk, rollout.texts, kl.tolist()):
            rows.append({"prompt_index": i, "id": p.get("id", str(i)), "family": p.get("family", "all"),
                         "prompt": p["prompt"], "response": text, "gold": float(gold_fn(p["spec"], text)), "kl": k})
    return gather(rows)


def evaluate_policy(policy, ref_lm, tokenizer, pool: Sequence[Mapping], proxies: Mapping, ev: Mapping,
                    seed: int) -> tuple[list[dict], dict]:
    """(sample rows with gold, KL and each proxy's score, summary metrics) of `policy` on the pool's prompts.

    `proxies` maps a reward-model name to a scorer (`.score(prompts, responses)`); `ev` is `rlhf.eval`.
    """
    prompts, sft_gold = heldout_prompts(pool)
    rows = sample_policy(policy, ref_lm, tokenizer, prompts, int(ev["n_samples"]), int(ev["max_new_tokens"]),
                         float(ev["temperature"]), seed=seed, batch_size=int(ev["batch_size"]))
    scores = {name: scorer.score([r["prompt"] for r in rows], [r["response"] for r in rows]).tolist()
              for name, scorer in proxies.items()}
    for name, values in scores.items():
        for r, v in zip(rows, values):
            r[f"proxy_{name}"] = round(float(v), 5)
    return rows, summarize_policy(rows, sft_gold, n_bootstrap=int(ev["bootstrap"]), seed=seed, proxies=scores)


def curve_point_fn(policy_lm, ref_lm, tokenizer, prompts: Sequence[Mapping], score, ev: Mapping, seed: int):
    """step -> gold, proxy and KL of one sample per prompt: a point of the over-optimisation curve."""
    def evaluate(step: int) -> dict:
        rows = sample_policy(policy_lm, ref_lm, tokenizer, prompts, 1, int(ev["max_new_tokens"]),
                             float(ev["temperature"]), seed=seed + 17, batch_size=int(ev["batch_size"]),
                             progress=False)
        proxy = score([r["prompt"] for r in rows], [r["response"] for r in rows])
        kl = sum(r["kl"] for r in rows) / len(rows)
        return {"gold": sum(r["gold"] for r in rows) / len(rows), "proxy": float(proxy.mean()), "kl": kl,
                "sqrt_kl": max(kl, 0.0) ** 0.5}
    return evaluate
