"""Stage `dpo`: Direct Preference Optimisation from the SFT policy on the reward models' labeled pairs.

The baseline that needs no reward model and no sampling during training. Published as `policy-dpo`;
gate: gold gain over SFT with the 95% interval above 0.

The same command is the `dpo_margin` ablation stage: with `--margins` (LRHP's predicted margin per
training pair, from `lrhp_margin`) each pair's loss is weighted (`pipelines.rlhf.dpo.margin_weights`),
and with `--baseline` (the plain `dpo` output) the stage reports its gold reward minus plain DPO's on
the same prompts, a paired bootstrap over prompts.
"""
from __future__ import annotations

import copy
from functools import partial

import numpy as np

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.models.causal_lm import save_causal_lm
from pipelines.evaluation.bootstrap import paired_difference_ci
from pipelines.rlhf.dpo import add_reference_logprobs, collate_dpo, dpo_examples, dpo_loss, margin_weights
from pipelines.rlhf.heldout import evaluate_policy, greedy_references
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config
from stages.policy_common import POLICY_INPUTS, gold_gate, load_sft, policy_options, read_pool, reward_scorers
from stages.reward_common import relative


def run(ctx: StageContext) -> None:
    ctx.use_seed("rlhf_seed")
    p = ctx.block("dpo")
    beta = float(p["beta"])
    if beta <= 0:
        raise ParamsError(f"params.yaml: dpo.beta must be > 0, got {beta}")
    cfg = train_config(ctx, p, "dpo")
    set_seed(ctx.seed)
    policy, tokenizer = load_sft(ctx)
    ref_lm = copy.deepcopy(policy).eval().requires_grad_(False)
    pairs = ctx.input("pairs")
    records = read_jsonl(pairs)
    examples = dpo_examples(records, tokenizer, int(p["max_length"]))
    weighted = _weigh_by_margins(ctx, records, examples)
    add_reference_logprobs(ref_lm, examples, tokenizer.pad_token_id, batch_size=int(p["ref_batch_size"]))
    ctx.log_dataset(pairs, "training", "prefs_train")
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(pairs),
                                             file_md5(ctx.input("sft") / "model.safetensors")))
    result = train(policy, examples, partial(dpo_loss, beta=beta), cfg, checkpoint_dir=str(ckpt),
                   on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_dpo, pad_id=tokenizer.pad_token_id))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    policy.eval()
    rl = ctx.block("rlhf")
    proxies = reward_scorers(ctx, rl["reward_models"], batch_size=int(rl["eval"]["batch_size"]),
                             references=greedy_references(ref_lm, tokenizer, rl["eval"]))
    out = ctx.output("out")
    rows, metrics = evaluate_policy(policy, ref_lm, tokenizer, read_pool(ctx), proxies, rl["eval"], ctx.seed)
    write_jsonl_atomic(rows, out / "samples.jsonl")
    last = next((r for r in reversed(result.history) if "train_acc" in r), {})
    metrics.update(weighted)
    if ctx.input("baseline") is not None:
        metrics.update(_against_plain(rows, read_jsonl(ctx.input("baseline") / "samples.jsonl"), rl["eval"], ctx.seed))
    metrics.update({"train_pairs": len(examples), "train_steps": result.steps, "beta": beta,
                    "stopped_by_time_budget": result.stopped_by_time_budget,
                    "final_train_acc": last.get("train_acc")})
    metrics["gate"] = gold_gate(ctx, metrics)
    save_causal_lm(policy, tokenizer, str(out / "model"))
    finish_trained_model(ctx, out, relative(ctx, ctx.output_path("out")), result.history, "DPO", "train_acc", metrics)
    drop_checkpoint(ckpt)


def _weigh_by_margins(ctx: StageContext, records: list[dict], examples: list[dict]) -> dict:
    """Attach each example's weight from `--margins` (by pair id); metrics describing the weights."""
    path = ctx.input("margins")
    if path is None:
        return {}
    predicted = {str(r["id"]): float(r["predicted_margin"]) for r in read_jsonl(path)}
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    missing = [i for i in ids if i not in predicted]
    if missing:
        raise ParamsError(f"{path}: no predicted margin for {len(missing)} training pair(s), e.g. id {missing[0]!r}; "
                          f"rerun lrhp_margin on {ctx.input('pairs').name}")
    weights = margin_weights([predicted[i] for i in ids])
    for ex, w in zip(examples, weights):
        ex["weight"] = w
    return {"margin_weighted": True, "weight_zero_share": round(sum(w == 0 for w in weights) / len(weights), 4),
            "weight_max": round(max(weights), 4)}


def _against_plain(rows: list[dict], plain_rows: list[dict], ev: dict, seed: int) -> dict:
    """Gold reward minus plain DPO's, per prompt (mean over its samples), paired bootstrap over prompts."""
    def per_prompt(sample_rows):
        by_id: dict = {}
        for r in sample_rows:
            by_id.setdefault(r["id"], []).append(float(r["gold"]))
        return {k: sum(v) / len(v) for k, v in by_id.items()}

    ours, plain = per_prompt(rows), per_prompt(plain_rows)
    if set(ours) != set(plain):
        raise ParamsError("--baseline samples.jsonl holds other prompts than this run's: rerun both on the same pool")
    ids = sorted(ours)
    d, lo, hi = paired_difference_ci(np.array([ours[i] for i in ids]), np.array([plain[i] for i in ids]),
                                     int(ev["bootstrap"]), seed)
    return {"gold_minus_plain_dpo": round(d, 5), "gold_minus_plain_dpo_ci95_low": round(lo, 5),
            "gold_minus_plain_dpo_ci95_high": round(hi, 5)}


if __name__ == "__main__":
    stage_main("dpo", run, blocks=("rlhf_seed", "dpo", "rlhf"), inputs=(*POLICY_INPUTS, "pairs", "margins?", "baseline?"),
               outputs=("out",),
               configure=policy_options)
