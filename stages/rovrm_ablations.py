"""Stage `rovrm_ablations`: RoVRM with a phase dropped, or with its auxiliary data chosen another way.

Variants (`visual.ablations`): `no_text`, `no_caption` (drop a phase), `random`, `centroid` (equal-K
selection baselines), `all_data` (every auxiliary pair). Each trains like `rovrm` from the visual
policy and is scored on the same held-out visual pairs; metrics are prefixed by the variant. No
model is kept or published: these answer "which part of RoVRM matters", `rovrm_compare` reads them.
"""
from __future__ import annotations

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.plots import plot_grouped_bars
from stages.visual_common import (
    VARIANTS, accuracy_key, evaluate_visual_rm, policy_images, remove_checkpoints, train_visual_rm, variant_phases,
)


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    variants = list(ctx.block("visual")["ablations"])
    bad = [v for v in variants if v not in VARIANTS or v in ("rovrm", "visual_only")]
    if bad or not variants:
        raise ParamsError(f"params.yaml: visual.ablations: {bad or 'empty'}; choose from "
                          f"{sorted(set(VARIANTS) - {'rovrm', 'visual_only'})}")
    images = policy_images(ctx)
    out = ctx.output("models/rovrm_ablations")
    metrics: dict = {"variants": variants}
    checkpoints = []
    for variant in variants:
        rm, history, summary, folders = train_visual_rm(ctx, variant_phases(ctx, variant), images,
                                                        f"rovrm_ablations/{variant}")
        checkpoints += folders
        metrics.update(evaluate_visual_rm(ctx, rm, images, out, prefix=f"{variant}/"))
        metrics.update({f"{variant}/{k}": v for k, v in summary.items()})
        ctx.log_history(history, variant)
    keys = {v: accuracy_key(metrics, f"{v}/") for v in variants}
    plot_grouped_bars(variants, {"accuracy": [metrics[keys[v]] for v in variants],
                                 "CI low": [metrics[f"{keys[v]}_ci95_low"] for v in variants]},
                      out / "plots" / "ablations.png", "RoVRM ablations: held-out visual pairs", "accuracy")
    ctx.write_metrics(out, metrics)
    remove_checkpoints(checkpoints)


if __name__ == "__main__":
    stage_main("rovrm_ablations", run, blocks=("visual",))
