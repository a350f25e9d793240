"""Stage `gram_ablations`: GRAM against its two ablations (no stage-1 pre-training, no label smoothing).

An ablation stage (dvc.yaml `meta.ablation`): it runs in the smoke and study profiles and on request,
not in the default profile, whose time goes to the main models. It collects the harness metrics of
each model in `gram_ablations.models` (their metrics.json from `--metrics NAME=PATH`) into one table
and one metrics file; `studies/gram.yaml` turns the same numbers over seeds into claims.
"""
from __future__ import annotations

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.atomic import write_text_atomic
from pipelines.evaluation.reward_report import comparison_table, harness_metrics
from stages.reward_common import add_named_paths, listed_model_metrics, relative


def run(ctx: StageContext) -> None:
    labels, per_model = listed_model_metrics(ctx, "gram_ablations")
    out = ctx.output("out")
    write_text_atomic(out / "comparison.md", "# GRAM and its ablations on the simulated world\n\n"
                      "Accuracy against the gold reward's ordering, 95% bootstrap intervals (one seed: "
                      "`alignflow study studies/gram.yaml` gives the claims over seeds).\n\n"
                      + comparison_table(per_model, labels))
    ctx.write_metrics(out, {"n_models": len(per_model), **harness_metrics(per_model)})
    ctx.log_artifacts_on_success(relative(ctx, ctx.output_path("out")), "report")


def options(parser) -> None:
    add_named_paths(parser, "metrics", "metrics.json of each reward model in the table")


if __name__ == "__main__":
    stage_main("gram_ablations", run, outputs=("out",), configure=options)
