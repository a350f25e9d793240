"""Stage `ppo_gram` / `ppo_bt`: PPO from the SFT policy against a trained reward model.

`--reward gram`: a sample's reward is GRAM's swap-averaged probability that it beats the SFT policy's
greedy response to the same prompt. `--reward bt`: the Bradley-Terry scalar. Both are standardised on
the first rollout. The held-out curve (gold, proxy, KL every `ppo.eval_every` iterations) is the
over-optimisation curve. Published as `policy-ppo-<reward>`; gate: gold gain over SFT, 95% CI above 0.
"""
from __future__ import annotations

import argparse
import copy

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.data.world import gold_reward
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.policy_eval import sample_policy
from pipelines.models.causal_lm import save_causal_lm
from pipelines.rlhf.ppo import PPOConfig, PolicyWithValue, train_ppo
from pipelines.training.config import TrainConfig
from pipelines.training.rng import set_seed
from stages.common import finish_trained_model
from stages.policy_common import (evaluate_policy, gold_gate, greedy_references, heldout_prompts, load_sft,
                                  proxy_scorers, train_prompts)

CURVE_COLUMNS = ["step", "gold", "proxy", "kl", "sqrt_kl"]


def _configs(ctx: StageContext, p: dict) -> tuple[PPOConfig, TrainConfig]:
    body = {k: v for k, v in p.items() if k not in ("optim", "curve_prompts")}
    try:
        cfg = PPOConfig.from_dict({**body, "seed": ctx.seed})
        optim = TrainConfig.from_dict({**p["optim"], "seed": ctx.seed})
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: ppo: {exc}") from exc
    return cfg, optim


def curve_eval(ctx, policy_lm, ref_lm, tokenizer, score, n_prompts: int):
    """gold, proxy and KL of one sample per held-out prompt: a point of the over-optimisation curve."""
    ev = ctx.block("rlhf")["eval"]
    prompts = heldout_prompts(ctx)[0][:n_prompts]

    def evaluate(step: int) -> dict:
        rows = sample_policy(policy_lm, ref_lm, tokenizer, prompts, 1, int(ev["max_new_tokens"]),
                             float(ev["temperature"]), seed=ctx.seed + 17, batch_size=int(ev["batch_size"]),
                             progress=False)
        proxy = score([r["prompt"] for r in rows], [r["response"] for r in rows])
        kl = sum(r["kl"] for r in rows) / len(rows)
        return {"gold": sum(r["gold"] for r in rows) / len(rows), "proxy": float(proxy.mean()), "kl": kl,
                "sqrt_kl": max(kl, 0.0) ** 0.5}
    return evaluate


def run(ctx: StageContext, reward: str) -> None:
    name = f"ppo_{reward}"
    ctx.use_seed("rlhf_seed")
    p = ctx.block("ppo")
    cfg, optim = _configs(ctx, p)
    rl = ctx.block("rlhf")
    set_seed(ctx.seed)
    sft_lm, tokenizer = load_sft(ctx)
    ref_lm = copy.deepcopy(sft_lm).eval().requires_grad_(False)
    policy = PolicyWithValue(sft_lm)
    references = greedy_references(ref_lm, tokenizer, rl["eval"])
    proxies = proxy_scorers(ctx, references, int(rl["eval"]["batch_size"]))
    score = proxies[reward]
    prompts = train_prompts(ctx, int(rl["n_train_prompts"]))
    spec_of: dict = {}
    for r in read_jsonl(ctx.root / "data/world/sft_train.jsonl"):
        spec_of.setdefault(r["prompt"], r["spec"])

    def train_gold(idx, rollout) -> dict:
        golds = [gold_reward(spec_of[prompts[i]], t) for i, t in zip(idx, rollout.texts)]
        return {"train_gold": sum(golds) / len(golds)}

    result = train_ppo(policy, ref_lm, tokenizer, prompts, score, cfg, optim,
                       eval_fn=curve_eval(ctx, policy.lm, ref_lm, tokenizer, score, int(p["curve_prompts"])),
                       on_rollout=train_gold)
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2), "phase_seconds": result.phase_seconds})
    policy.eval()
    out = ctx.output(f"models/{name}")
    metrics = evaluate_policy(ctx, policy.lm, ref_lm, tokenizer, proxies, out)
    metrics["proxy"] = metrics[f"proxy/{reward}"]
    curve = [r for r in result.history if "gold" in r]
    train_rows = [{**r, "loss": r["pg_loss"]} for r in result.history if "score_raw" in r]
    write_csv(curve, out / "plots" / "overopt.csv", CURVE_COLUMNS)
    write_csv(train_rows, out / "plots" / "ppo_train.csv",
              ["step", "score_raw", "train_gold", "kl", "return", "response_len", "pg_loss", "vf_loss", "approx_kl",
               "clipfrac", "lr"])
    metrics.update({
        "reward_model": reward, "ppo_iterations": result.steps, "samples": result.samples,
        "generated_tokens": result.generated_tokens,
        "stopped_by_time_budget": result.stopped_by_time_budget,
        "reward_norm_mean": round(result.normalizer.mean, 5) if result.normalizer else None,
        "reward_norm_std": round(result.normalizer.std, 5) if result.normalizer else None,
        "curve_final_gold": round(curve[-1]["gold"], 4) if curve else None,
        "curve_max_gold": round(max(r["gold"] for r in curve), 4) if curve else None,
    })
    metrics["gate"] = gold_gate(ctx, metrics)
    save_causal_lm(policy.lm, tokenizer, str(out / "model"))
    finish_trained_model(ctx, out, f"models/{name}", train_rows, f"PPO against {reward.upper()} reward",
                         "train_gold", metrics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reward", choices=("gram", "bt"), required=True)
    args = ap.parse_args()
    stage_main(f"ppo_{args.reward}", lambda ctx: run(ctx, args.reward), blocks=("rlhf_seed", "ppo", "rlhf"))


if __name__ == "__main__":
    main()
