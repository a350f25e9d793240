"""Stage `rm_compare`: GRAM against its ablations and the Bradley-Terry baseline, side by side.

Collects the harness metrics of each reward model the profile lists (`rm_compare.models`; their
metrics.json from `--metrics NAME=PATH`) into one table, and draws the best-of-n curve of every
reward model the `best_of_n` stage picked with (its picks.jsonl, computed once there), each pick
scored by the gold reward, next to the oracle and a single sample.
"""
from __future__ import annotations

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.atomic import write_text_atomic
from pipelines.data.jsonl import read_jsonl
from pipelines.data.loaders import read_preferences
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import best_of_n_curve_from_picks, evaluate_pairs, plot_best_of_n
from pipelines.evaluation.reward_report import best_of_n_table, comparison_table, harness_metrics
from pipelines.models.reward import registry
from pipelines.rlhf.best_of_n import picks_by_chooser
from stages.reward_common import add_named_paths, listed_model_metrics, named_paths, relative

INPUTS = ("pool", "picks")


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("rm_compare")
    labels, per_model = listed_model_metrics(ctx, "rm_compare")
    picks = read_jsonl(ctx.input("picks"))
    ns = sorted({int(r["n"]) for r in picks})
    pool = [row for row in read_jsonl(ctx.input("pool")) if len(row["samples"]) >= max(ns)]
    by_chooser = picks_by_chooser(picks, [r["id"] for r in pool])
    prompts = [{"prompt": r["prompt"], "spec": r["spec"]} for r in pool]
    samples = [r["samples"] for r in pool]
    curves = {name: best_of_n_curve_from_picks(chosen, prompts, samples, seed=ctx.seed, n_bootstrap=int(p["bootstrap"]))
              for name, chosen in by_chooser.items()}
    out = ctx.output("out")
    write_text_atomic(out / "comparison.md", "# Reward models on the simulated world\n\n"
                      "Accuracy against the gold reward's ordering, 95% bootstrap intervals.\n\n"
                      + comparison_table(per_model, labels))
    entries = {name: registry.get(name) for name in curves}
    plot_best_of_n({f"{e.title} ({e.pick_rule})": curves[name] for name, e in entries.items()},
                   out / "plots" / "best_of_n.png")
    rows, columns, bon_metrics = best_of_n_table(curves)
    write_csv(rows, out / "plots" / "best_of_n.csv", columns)
    metrics: dict = {"n_prompts": len(prompts), **harness_metrics(per_model), **bon_metrics}
    extra = p.get("extra_eval") or {}
    if extra.get("source"):
        models = registry.load_many(named_paths(ctx, "reward-models"), list(curves))
        metrics.update(_score_extra(ctx, extra, models, int(p["batch_size"])))
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success(relative(ctx, ctx.output_path("out")), "report")


def _score_extra(ctx: StageContext, extra: dict, models: dict, batch: int) -> dict:
    """Label accuracy of each reward model on real preference data read by the spine's loaders."""
    source = str(extra["source"])
    if not source.startswith("hub:"):
        source = str(ctx.root / source)
    loaded = read_preferences(source, format=extra.get("format", "auto"), split=extra.get("split", "train"),
                              limit=extra.get("limit"), invalid=str(extra.get("invalid", "error")))
    records = loaded.records
    metrics = {"extra/n": len(records), "extra/n_skipped": sum(loaded.skipped.values()),
               **{f"extra/skipped/{reason}": n for reason, n in sorted(loaded.skipped.items())}}
    for name, model in models.items():
        m, _ = evaluate_pairs(model, records, "extra", seed=ctx.seed, n_bootstrap=int(extra.get("bootstrap", 1000)),
                              batch_size=batch)
        metrics.update({f"{name}/{k}": round(v, 5) for k, v in m.items() if k.startswith("extra/acc_label")})
    return metrics


def options(parser) -> None:
    add_named_paths(parser, "metrics", "metrics.json of each reward model in the table")
    add_named_paths(parser, "reward-models", "folders of the best-of-n choosers (scored on rm_compare.extra_eval)")


if __name__ == "__main__":
    stage_main("rm_compare", run, inputs=INPUTS, outputs=("out",), configure=options)
