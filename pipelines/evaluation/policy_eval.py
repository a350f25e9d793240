"""Summarise a policy against the gold reward: KL to the reference, and paired comparison with SFT.

Every policy (PPO, DPO, best-of-n) is summarised the same way on the same held-out prompts: gold
reward (mean, 95% bootstrap interval over prompts), its paired gain over the SFT policy's samples of
the same prompts, the gold win rate against those samples (ties count half), proxy rewards, KL to
the SFT policy (Monte-Carlo for sampled policies, analytic for best-of-n) and a per-family breakdown.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from pipelines.evaluation.bootstrap import bootstrap_mean_ci


def _per_prompt(values: Sequence[float], index: Sequence[int], n_prompts: int) -> np.ndarray:
    sums, counts = np.zeros(n_prompts), np.zeros(n_prompts)
    np.add.at(sums, np.asarray(index), np.asarray(values, dtype=np.float64))
    np.add.at(counts, np.asarray(index), 1)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} prompts have no samples")
    return sums / counts


def _win_rate(policy_gold: Sequence[float], sft_gold: Sequence[float]) -> float:
    a, b = np.asarray(policy_gold)[:, None], np.asarray(sft_gold)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def _with_ci(metrics: dict, key: str, per_prompt: np.ndarray, n_bootstrap: int, seed: int) -> None:
    mean, low, high = bootstrap_mean_ci(per_prompt, n_bootstrap, seed)
    metrics[key] = round(mean, 4)
    metrics[key + "_ci95_low"] = round(low, 4)
    metrics[key + "_ci95_high"] = round(high, 4)


def summarize_policy(rows: Sequence[Mapping], sft_gold: Sequence[Sequence[float]], n_bootstrap: int = 1000,
                     seed: int = 0, kl: float | None = None, proxies: Mapping[str, Sequence[float]] | None = None) -> dict:
    """Metrics of one policy's samples ``rows`` (from ``sample_policy``-like dicts) against SFT samples.

    ``sft_gold[i]`` holds the gold rewards of the SFT policy's samples for prompt ``i``; intervals
    resample prompts. ``kl`` overrides the per-sample estimate (best-of-n's analytic bound);
    ``proxies`` maps a reward-model name to one score per row.
    """
    n_prompts = len(sft_gold)
    index = [int(r["prompt_index"]) for r in rows]
    gold = _per_prompt([r["gold"] for r in rows], index, n_prompts)
    sft = np.array([np.mean(g) for g in sft_gold], dtype=np.float64)
    by_prompt: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by_prompt[int(r["prompt_index"])].append(float(r["gold"]))
    wins = np.array([_win_rate(by_prompt[i], sft_gold[i]) for i in range(n_prompts)])
    m: dict = {"n_prompts": n_prompts, "n_samples": len(rows)}
    _with_ci(m, "gold", gold, n_bootstrap, seed)
    _with_ci(m, "gold_gain_vs_sft", gold - sft, n_bootstrap, seed)
    _with_ci(m, "win_rate_vs_sft", wins, n_bootstrap, seed)
    m["sft_gold"] = round(float(sft.mean()), 4)
    if kl is None:
        _with_ci(m, "kl", _per_prompt([r["kl"] for r in rows], index, n_prompts), n_bootstrap, seed)
    else:
        m["kl"] = round(float(kl), 4)
    m["sqrt_kl"] = round(math.sqrt(max(m["kl"], 0.0)), 4)
    for name, scores in (proxies or {}).items():
        if len(scores) != len(rows):
            raise ValueError(f"proxy {name!r}: {len(scores)} scores for {len(rows)} samples")
        m[f"proxy/{name}"] = round(float(np.mean(scores)), 4)
    families: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        families[r.get("family", "all")].append(int(r["prompt_index"]))
    for fam in sorted(families):
        prompts_in = sorted(set(families[fam]))
        m[f"family/{fam}/gold"] = round(float(gold[prompts_in].mean()), 4)
        m[f"family/{fam}/sft_gold"] = round(float(sft[prompts_in].mean()), 4)
    m["response_words"] = round(float(np.mean([len(str(r["response"]).split()) for r in rows])), 2)
    return m

