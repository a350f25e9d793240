"""Stage `gram_finetune@{gram,gram_nopre,gram_eps0}` (GRAM stage 2): label-smoothed A/B judging on labeled pairs.

One module, three dvc.yaml `foreach` variants that differ only in their arguments: the initial model
(`--init`: after stage 1, or straight from the base LM) and the label smoothing (the
`gram.label_smoothing` param, or `--label-smoothing 0`). Each evaluates its judge with the shared
harness. A variant given `--baseline` (the BT reward model's metrics.json; only `gram`, published as
`reward-gram`) writes the registry gate: out-of-distribution accuracy against the gold ordering at
least the baseline's.
"""
from __future__ import annotations

import json
from functools import partial

from alignflow.runtime.gates import Provenance, baseline_gate, file_eval_set
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward import GenerativeRewardModel, collate_judge, gram_stage2_loss, preference_examples
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config
from stages.reward_common import EVAL_SPLITS, evaluate_reward_model, relative

GATE_METRIC = "test_ood/acc_gold"


def _gate(ctx: StageContext, metrics: dict) -> dict:
    baseline = json.loads(ctx.input("baseline").read_text())
    split = GATE_METRIC.split("/")[0]

    def measured_on(m: dict) -> str:
        return file_eval_set(ctx.root, relative(ctx, ctx.input(split)), m[f"{split}/n"])

    provenance = Provenance(ctx.profile, measured_on(metrics), metrics["stopped_by_time_budget"])
    return baseline_gate(GATE_METRIC, metrics[GATE_METRIC], baseline[GATE_METRIC], measured_on(baseline), provenance,
                         "OOD gold-order accuracy vs BT")


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("gram")
    cfg = train_config(ctx, p, "gram")
    eps = float(p["label_smoothing"] if ctx.args.label_smoothing is None else ctx.args.label_smoothing)
    set_seed(ctx.seed)
    init, pairs = ctx.input("init"), ctx.input("pairs")
    name = ctx.output_path("out").name
    rm = GenerativeRewardModel(load_causal_lm(str(init)), load_tokenizer(str(init)), int(p["max_length"]))
    records = read_jsonl(pairs)
    examples = preference_examples(records, rm.tokenizer, rm.max_length, seed=ctx.seed)
    ctx.log_dataset(pairs, "training", "prefs_train")
    ckpt = ctx.checkpoint_dir(checkpoint_key(name, p, eps, ctx.seed, file_md5(pairs),
                                             file_md5(init / "model.safetensors")))
    result = train(rm, examples, partial(gram_stage2_loss, eps=eps), cfg, checkpoint_dir=str(ckpt),
                   on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_judge, pad_id=rm.pad_id))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    rm.eval()
    out = ctx.output("out")
    metrics = evaluate_reward_model(ctx, rm, out, p["eval"])
    metrics.update({"label_smoothing": eps, "init": relative(ctx, init), "train_pairs": len(records),
                    "train_steps": result.steps,
                    "stopped_by_time_budget": result.stopped_by_time_budget})
    if ctx.input("baseline") is not None:
        metrics["gate"] = _gate(ctx, metrics)
    rm.save(str(out / "model"))
    finish_trained_model(ctx, out, relative(ctx, ctx.output_path("out")), result.history,
                         f"GRAM stage 2 ({name})", "acc", metrics)
    drop_checkpoint(ckpt)


def _options(parser) -> None:
    parser.add_argument("--label-smoothing", type=float, default=None, help="override gram.label_smoothing")


if __name__ == "__main__":
    stage_main("gram_finetune", run, blocks=("gram",),
               inputs=("init", "pairs", *EVAL_SPLITS, "baseline?"), outputs=("out",), configure=_options)
