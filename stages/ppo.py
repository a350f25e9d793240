"""Stage `ppo@<key>` (dvc.yaml `foreach`: ppo_gram, ppo_bt): PPO from the SFT policy against a trained reward model.

`--reward NAME` names the reward model (a registry entry whose folder comes in `--reward-models`):
GRAM's reward is its swap-averaged probability that a sample beats the SFT policy's greedy response to
the same prompt, BT's its scalar. Rewards are standardised on the first rollout. The held-out curve
(gold, proxy, KL every `ppo.eval_every` iterations) is the over-optimisation curve. Published as
`policy-ppo-<reward>`; gate: gold gain over SFT, 95% CI above 0.
"""
from __future__ import annotations

import copy

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.data.world import gold_reward
from pipelines.evaluation.plots import write_csv
from pipelines.models.causal_lm import save_causal_lm
from pipelines.models.reward import registry
from pipelines.rlhf.heldout import (curve_point_fn, distinct_prompts, evaluate_policy, greedy_references,
                                    heldout_prompts)
from pipelines.rlhf.ppo import PPOConfig, PolicyWithValue, optimizer_config, train_ppo
from pipelines.training.rng import set_seed
from stages.common import finish_trained_model
from stages.policy_common import POLICY_INPUTS, gold_gate, load_sft, policy_options, read_pool, reward_scorers
from stages.reward_common import relative

CURVE_COLUMNS = ["step", "gold", "proxy", "kl", "sqrt_kl"]


def _configs(ctx: StageContext, p: dict):
    body = {k: v for k, v in p.items() if k not in ("optim", "curve_prompts")}
    try:
        cfg = PPOConfig.from_dict({**body, "seed": ctx.seed})
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: ppo: {exc}") from exc
    return cfg, optimizer_config(p["optim"], cfg)


def run(ctx: StageContext) -> None:
    reward = ctx.args.reward
    ctx.use_seed("rlhf_seed")
    p = ctx.block("ppo")
    cfg, optim = _configs(ctx, p)
    rl = ctx.block("rlhf")
    n_train = int(rl["n_train_prompts"])
    if n_train < 1:
        raise ParamsError(f"params.yaml: rlhf.n_train_prompts must be >= 1, got {n_train}")
    proxy_names = list(rl["reward_models"])
    if reward not in proxy_names:
        raise ParamsError(f"params.yaml: rlhf.reward_models must include the PPO reward {reward!r}")
    set_seed(ctx.seed)
    sft_lm, tokenizer = load_sft(ctx)
    ref_lm = copy.deepcopy(sft_lm).eval().requires_grad_(False)
    policy = PolicyWithValue(sft_lm)
    references = greedy_references(ref_lm, tokenizer, rl["eval"])
    proxies = reward_scorers(ctx, proxy_names, batch_size=int(rl["eval"]["batch_size"]), references=references)
    score = proxies[reward].score
    sft_train = read_jsonl(ctx.input("prompts"))
    prompts = distinct_prompts(sft_train, n_train)
    spec_of: dict = {}
    for r in sft_train:
        spec_of.setdefault(r["prompt"], r["spec"])

    def train_gold(idx, rollout) -> dict:
        golds = [gold_reward(spec_of[prompts[i]], t) for i, t in zip(idx, rollout.texts)]
        return {"train_gold": sum(golds) / len(golds)}

    pool = read_pool(ctx)
    curve_prompts = heldout_prompts(pool)[0][: int(p["curve_prompts"])]
    result = train_ppo(policy, ref_lm, tokenizer, prompts, score, cfg, optim,
                       eval_fn=curve_point_fn(policy.lm, ref_lm, tokenizer, curve_prompts, score, rl["eval"], ctx.seed),
                       on_rollout=train_gold, on_log=ctx.stream_history("train"))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2), "phase_seconds": result.phase_seconds})
    policy.eval()
    out = ctx.output("out")
    rows, metrics = evaluate_policy(policy.lm, ref_lm, tokenizer, pool, proxies, rl["eval"], ctx.seed)
    write_jsonl_atomic(rows, out / "samples.jsonl")
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
    finish_trained_model(ctx, out, relative(ctx, ctx.output_path("out")), train_rows,
                         f"PPO against {registry.get(reward).title} reward", "train_gold", metrics)


def _options(parser) -> None:
    parser.add_argument("--reward", required=True, help="the reward model PPO optimises (a registry name)")
    policy_options(parser)


if __name__ == "__main__":
    stage_main("ppo", run, blocks=("rlhf_seed", "ppo", "rlhf"), inputs=(*POLICY_INPUTS, "prompts"),
               outputs=("out",), configure=_options)
