"""Stages `gram`, `gram_nopre`, `gram_eps0` (GRAM stage 2): label-smoothed A/B judging on labeled pairs.

One module, three dvc.yaml entries that differ only in their flags: the initial model (after
stage 1, or straight from the base LM) and the label smoothing (the `gram.label_smoothing` param,
or 0). Each evaluates its judge with the shared harness. Only `gram` is published, as
`reward-gram`; its gate: out-of-distribution accuracy against the gold ordering at least the BT
reward model's (`models/bt_rm/metrics.json`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from functools import partial

from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.gates import Provenance, baseline_gate, file_eval_set
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward import GenerativeRewardModel, collate_judge, gram_stage2_loss, preference_examples
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, finish_trained_model, train_config
from stages.reward_common import EVAL_SPLITS, evaluate_reward_model, train_records

GATE_METRIC = "test_ood/acc_gold"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="stage name; output goes to models/NAME")
    parser.add_argument("--init", required=True, help="causal LM folder to start from")
    parser.add_argument("--label-smoothing", type=float, default=None, help="override gram.label_smoothing")
    parser.add_argument("--publish", action="store_true", help="write the registry gate (reward-gram)")
    return parser.parse_args(argv)


def _gate(ctx: StageContext, metrics: dict) -> dict:
    bt_path = ctx.root / "models/bt_rm/metrics.json"
    if not bt_path.is_file():
        raise AlignflowError(f"{bt_path}: missing; the `gram` gate compares against the BT reward model")
    bt = json.loads(bt_path.read_text())
    split = GATE_METRIC.split("/")[0]

    def measured_on(m: dict) -> str:
        return file_eval_set(ctx.root, f"data/world/{EVAL_SPLITS[split]}", m[f"{split}/n"])

    provenance = Provenance(ctx.profile, measured_on(metrics), metrics["stopped_by_time_budget"])
    return baseline_gate(GATE_METRIC, metrics[GATE_METRIC], bt[GATE_METRIC], measured_on(bt), provenance,
                         "OOD gold-order accuracy vs BT")


def make_run(args: argparse.Namespace):
    def run(ctx: StageContext) -> None:
        ctx.use_seed("reward_seed")
        p = ctx.block("gram")
        cfg = train_config(ctx, p, "gram")
        eps = float(p["label_smoothing"] if args.label_smoothing is None else args.label_smoothing)
        set_seed(ctx.seed)
        init = ctx.root / args.init
        rm = GenerativeRewardModel(load_causal_lm(str(init)), load_tokenizer(str(init)), int(p["max_length"]))
        records = train_records(ctx)
        examples = preference_examples(records, rm.tokenizer, rm.max_length, seed=ctx.seed)
        ctx.log_dataset(ctx.root / "data/prefs/train.jsonl", "training", "prefs_train")
        ckpt = ctx.checkpoint_dir(checkpoint_key(args.name, p, eps, ctx.seed, file_md5(ctx.root / "data/prefs/train.jsonl"),
                                                 file_md5(init / "model.safetensors")))
        result = train(rm, examples, partial(gram_stage2_loss, eps=eps), cfg, checkpoint_dir=str(ckpt),
                       collate_fn=partial(collate_judge, pad_id=rm.pad_id))
        ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
        rm.eval()
        out = ctx.output(f"models/{args.name}")
        metrics = evaluate_reward_model(ctx, rm, out, p["eval"])
        metrics.update({"label_smoothing": eps, "init": args.init, "train_pairs": len(records),
                        "train_steps": result.steps,
                        "stopped_by_time_budget": result.stopped_by_time_budget})
        if args.publish:
            metrics["gate"] = _gate(ctx, metrics)
        rm.save(str(out / "model"))
        finish_trained_model(ctx, out, f"models/{args.name}", result.history, f"GRAM stage 2 ({args.name})", "acc",
                             metrics)
        shutil.rmtree(ckpt, ignore_errors=True)

    return run


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    stage_main(arguments.name, make_run(arguments), blocks=("gram",))
