"""Stage `gram_adapt`: adapting a reward model to a new task family with few labels.

For each label budget (0 = no adaptation), fine-tune each starting model the profile names
(`gram_adapt.inits`: name and registry kind; by default the GRAM foundation model, a GRAM judge on
the base LM with no reward pre-training, and the BT reward model; folders from `--inits NAME=PATH`)
on the first `budget` pairs of the adaptation family, with the same step count, and measure accuracy
on its test split.
"""
from __future__ import annotations

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.adaptation import adaptation_curve
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_plots import plot_adaptation
from stages.common import train_config
from stages.reward_common import add_named_paths, named_paths, relative


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("gram_adapt")
    cfg = train_config(ctx, p, "gram_adapt")
    budgets = sorted({int(b) for b in p["budgets"]})
    train_path = ctx.input("adapt_train")
    adapt_train = read_jsonl(train_path)
    if budgets[-1] > len(adapt_train):
        raise ParamsError(f"params.yaml: gram_adapt.budgets: {budgets[-1]} labels asked, "
                          f"{relative(ctx, train_path)} has {len(adapt_train)}")
    test = read_jsonl(ctx.input("adapt_test"))[: int(p["eval"]["n_pairs"])]
    folders = named_paths(ctx, "inits")
    missing = [i["name"] for i in p["inits"] if i["name"] not in folders]
    if missing:
        raise ParamsError(f"params.yaml: gram_adapt.inits names {', '.join(missing)}, "
                          f"but dvc.yaml passes no --inits NAME=PATH for it")
    inits = [(i["name"], i["kind"], folders[i["name"]]) for i in p["inits"]]
    names = [name for name, _, _ in inits]
    metrics, rows = adaptation_curve(
        inits, budgets, adapt_train, test, cfg, ctx.seed, int(p["max_length"]), p["eval"],
        label_smoothing=float(ctx.block("gram")["label_smoothing"]),
        on_result=lambda name, budget, m: ctx.log_metrics({f"{name}/acc_gold": m["adapt_test/acc_gold"]}, step=budget))
    out = ctx.output("out")
    write_csv(rows, out / "plots" / "adaptation.csv",
              ["budget", *names, *(f"{i}_{s}" for i in names for s in ("low", "high"))])
    plot_adaptation(rows, names, out / "plots" / "adaptation.png")
    metrics["n_test_pairs"] = len(test)
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success(f"{relative(ctx, ctx.output_path('out'))}/plots", "plots")


if __name__ == "__main__":
    stage_main("gram_adapt", run, inputs=("adapt_train", "adapt_test"), outputs=("out",),
               configure=lambda parser: add_named_paths(parser, "inits", "starting model folders"))
