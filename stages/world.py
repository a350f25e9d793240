"""Stage `world`: build the simulated preference world (every split) into data/world/."""
from __future__ import annotations

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.world import WorldParams, build_world, world_summary, write_world
from pipelines.data.world.summary import gold_by_error_type
from pipelines.evaluation.plots import plot_grouped_bars, write_csv


def run(ctx: StageContext) -> None:
    raw = ctx.block("world")
    try:
        params = WorldParams.from_dict(raw)
    except ValueError as exc:
        raise ParamsError(f"params.yaml: world: {exc}") from exc
    splits = build_world(params, ctx.seed)
    out = ctx.output("out")
    write_world(splits, out)
    metrics = world_summary(splits, params)
    metrics["label_agreement_with_gold"] = metrics["prefs_train/label_agreement"]
    rows = gold_by_error_type(splits)
    write_csv(rows, out / "plots" / "gold_by_error_type.csv", ["error_type", "gold_mean", "n"])
    plot_grouped_bars([r["error_type"] for r in rows], {"gold reward": [r["gold_mean"] for r in rows]},
                      out / "plots" / "gold_by_error_type.png", "Gold reward by response error type", "mean gold")
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success(ctx.output_path("out") / "plots", "plots")


if __name__ == "__main__":
    stage_main("world", run, outputs=("out",))
