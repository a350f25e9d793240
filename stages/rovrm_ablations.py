"""Stage `rovrm_ablations`: RoVRM with a phase dropped, or with its auxiliary data chosen another way.

Variants (`visual.ablations`): `no_text`, `no_caption` (drop a phase), `random`, `centroid` (equal-K
selection baselines), `all_data` (every auxiliary pair). Each trains like `rovrm` from the visual
policy and is scored on the same held-out visual pairs; metrics are prefixed by the variant. No
model is kept or published: these answer "which part of RoVRM matters". Each is then compared with
RoVRM (`--rovrm`) on the same pairs, as a paired bootstrap difference with a `claims/` verdict. An
ablation stage (dvc.yaml `meta.ablation`): smoke and study profiles, or on request.
"""
from __future__ import annotations

import json

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import plot_grouped_bars
from pipelines.evaluation.plots import write_csv
from pipelines.visual.compare import ACCURACY_COLUMNS, REFERENCE, ablation_claims, accuracy_table
from pipelines.visual.images import ImageStore
from pipelines.visual.rm_eval import accuracy_key, evaluate_visual_rm, pair_credit, pairs_csv
from pipelines.visual.rm_training import (
    MAIN_VARIANTS, POOL_FILES, VARIANTS, phases_needed, remove_checkpoints, train_visual_rm, variant_phases,
)
from stages.common import train_config


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    variants = list(ctx.block("visual")["ablations"])
    bad = [v for v in variants if v not in VARIANTS or v in MAIN_VARIANTS]
    if bad or not variants:
        raise ParamsError(f"params.yaml: visual.ablations: {bad or 'empty'}; choose from "
                          f"{sorted(set(VARIANTS) - set(MAIN_VARIANTS))}")
    p = ctx.block("visual")["rm"]
    configs = {ph: train_config(ctx, p["phases"][ph], f"visual.rm.phases.{ph}") for ph in phases_needed(variants)}
    world, policy = ctx.input("world"), ctx.input("policy")
    images = ImageStore.for_model(world, policy)
    visual_train = read_jsonl(ctx.input("visual_train"))
    selections = json.loads(ctx.input("selections").read_text(encoding="utf-8"))
    pools = {phase: read_jsonl(world / f) for phase, f in POOL_FILES.items()}
    test = read_jsonl(ctx.input("visual_test"))[: int(p["eval"]["n_pairs"])]
    out = ctx.output("out")
    metrics: dict = {"variants": variants}
    checkpoints = []
    for variant in variants:
        tag = f"rovrm_ablations/{variant}"
        trained = train_visual_rm(policy, variant_phases(variant, visual_train, selections, pools), images, configs,
                                  int(p["max_length"]), ctx.seed, tag, ctx.checkpoint_dir,
                                  likelihood_anchor=p["likelihood_anchor"])
        ctx.write_machine_facts({f"{tag}/{phase}/seconds": s for phase, s in trained.seconds.items()})
        checkpoints += trained.checkpoints
        metrics.update(evaluate_visual_rm(trained.rm, images, test, out / "plots", ctx.seed,
                                          int(p["eval"]["bootstrap"]), int(p["eval"]["batch_size"]),
                                          prefix=f"{variant}/"))
        metrics.update({f"{variant}/{k}": v for k, v in trained.summary.items()})
        ctx.log_history(trained.history, variant)
    keys = {v: accuracy_key(metrics, f"{v}/") for v in variants}
    plot_grouped_bars(variants, {"accuracy": [metrics[keys[v]] for v in variants],
                                 "CI low": [metrics[f"{keys[v]}_ci95_low"] for v in variants]},
                      out / "plots" / "ablations.png", "RoVRM ablations: held-out visual pairs", "accuracy")
    sources = {REFERENCE: pairs_csv(ctx.input("rovrm") / "plots")}
    sources.update({v: pairs_csv(out / "plots", f"{v}/") for v in variants})
    acc_rows, acc_metrics = accuracy_table({name: pair_credit(path) for name, path in sources.items()},
                                           int(p["eval"]["bootstrap"]), ctx.seed)
    metrics.update(acc_metrics)
    metrics.update(ablation_claims(acc_metrics, variants))
    write_csv(acc_rows, out / "plots" / "accuracy.csv", ACCURACY_COLUMNS)
    ctx.write_metrics(out, metrics)
    remove_checkpoints(checkpoints)


if __name__ == "__main__":
    stage_main("rovrm_ablations", run, blocks=("visual",), inputs=("world", "policy", "visual_train", "visual_test", "selections", "rovrm"),
               outputs=("out",))
