"""What the policy stages (PPO, DPO, best-of-n) share: the SFT policy, the pool, proxy reward models, the gate.

Paths come from dvc.yaml: `--sft` (the SFT model folder), `--pool` (the `sft_samples` pool, whose
prompts every policy is judged on) and `--reward-models NAME=PATH ...`; the profile names which
reward models are the proxies every policy is reported under (`rlhf.reward_models`).
"""
from __future__ import annotations

from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext
from pipelines.data.jsonl import read_jsonl
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward import registry
from pipelines.models.tokenizer import load_tokenizer
from stages.reward_common import add_named_paths, named_paths, relative

POLICY_INPUTS = ("sft", "pool")


def policy_options(parser) -> None:
    add_named_paths(parser, "reward-models", "reward model folders")


def load_sft(ctx: StageContext):
    """The SFT policy and its tokenizer (the starting point and the KL reference of every policy)."""
    path = ctx.input("sft")
    return load_causal_lm(str(path)), load_tokenizer(str(path))


def read_pool(ctx: StageContext) -> list[dict]:
    return read_jsonl(ctx.input("pool"))


def reward_scorers(ctx: StageContext, names, **context) -> dict:
    """name -> loaded scorer for each reward model in `names` (folders from `--reward-models`)."""
    return registry.load_many(named_paths(ctx, "reward-models"), list(names), **context)


def gold_gate(ctx: StageContext, metrics: dict) -> dict:
    """Champion only if the gold reward beats the SFT policy's with the 95% interval clear of zero.

    Measured on the `sft_samples` pool (its prompts and the SFT gold the gain is paired with).
    """
    measured_on = file_eval_set(ctx.root, relative(ctx, ctx.input("pool")), metrics["n_prompts"])
    provenance = Provenance(ctx.profile, measured_on, metrics["stopped_by_time_budget"])
    return interval_gate("gold_gain_vs_sft", metrics["gold_gain_vs_sft"], metrics["gold_gain_vs_sft_ci95_low"], 0.0,
                         provenance, f"paired gold gain over SFT {metrics['gold_gain_vs_sft']:+.4f}")
