"""Stage `bt_rm`: the discriminative Bradley-Terry reward model baseline (same backbone, scalar head).

Published as `reward-bt`; gate: in-distribution gold-order accuracy with a 95% interval above chance.
"""
from __future__ import annotations

from functools import partial

from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_loss, collate_bt
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config
from stages.reward_common import EVAL_SPLITS, evaluate_reward_model, relative


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("bt_rm")
    cfg = train_config(ctx, p, "bt_rm")
    set_seed(ctx.seed)
    base, pairs = ctx.input("base"), ctx.input("pairs")
    rm = BTRewardModel(load_causal_lm(str(base)), load_tokenizer(str(base)), int(p["max_length"]), seed=ctx.seed)
    records = read_jsonl(pairs)
    examples = bt_examples(records, rm.tokenizer, rm.max_length)
    ctx.log_dataset(pairs, "training", "prefs_train")
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(pairs), file_md5(base / "model.safetensors")))
    result = train(rm, examples, bt_loss, cfg, checkpoint_dir=str(ckpt), on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_bt, pad_id=rm.pad_id))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    rm.eval()
    out = ctx.output("out")
    metrics = evaluate_reward_model(ctx, rm, out, p["eval"])
    low = metrics["test_id/acc_gold_ci95_low"]
    metrics.update({"train_pairs": len(records), "train_steps": result.steps,
                    "stopped_by_time_budget": result.stopped_by_time_budget,
                    "gate": interval_gate("test_id/acc_gold", metrics["test_id/acc_gold"], low, 0.5, Provenance(
                        ctx.profile, file_eval_set(ctx.root, relative(ctx, ctx.input("test_id")),
                                                   metrics["test_id/n"]),
                        result.stopped_by_time_budget), "ID gold-order accuracy vs chance")})
    rm.save(str(out / "model"))
    finish_trained_model(ctx, out, relative(ctx, ctx.output_path("out")), result.history,
                         "Bradley-Terry reward model", "acc", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("bt_rm", run, inputs=("base", "pairs", *EVAL_SPLITS), outputs=("out",))
