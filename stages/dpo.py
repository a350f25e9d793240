"""Stage `dpo`: Direct Preference Optimisation from the SFT policy on the reward models' labeled pairs.

The baseline that needs no reward model and no sampling during training. Published as `policy-dpo`;
gate: gold gain over SFT with the 95% interval above 0.
"""
from __future__ import annotations

import copy
from functools import partial

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.models.causal_lm import save_causal_lm
from pipelines.rlhf.dpo import add_reference_logprobs, collate_dpo, dpo_examples, dpo_loss
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
    examples = dpo_examples(read_jsonl(pairs), tokenizer, int(p["max_length"]))
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
    metrics.update({"train_pairs": len(examples), "train_steps": result.steps, "beta": beta,
                    "stopped_by_time_budget": result.stopped_by_time_budget,
                    "final_train_acc": last.get("train_acc")})
    metrics["gate"] = gold_gate(ctx, metrics)
    save_causal_lm(policy, tokenizer, str(out / "model"))
    finish_trained_model(ctx, out, relative(ctx, ctx.output_path("out")), result.history, "DPO", "train_acc", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("dpo", run, blocks=("rlhf_seed", "dpo", "rlhf"), inputs=(*POLICY_INPUTS, "pairs"), outputs=("out",),
               configure=policy_options)
