"""Stage `rlhf_compare`: every policy side by side, and the over-optimisation curve.

Reads the PPO runs (`--ppo`, one folder per reward model), DPO and best-of-n results, writes a
comparison table, the gold- and proxy-reward-against-sqrt(KL) figure with its CSV for `dvc plots`,
and flat metrics. Proxy columns follow `rlhf.reward_models`.
"""
from __future__ import annotations

import csv
import json

from pipelines.atomic import write_text_atomic
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.rlhf_plots import plot_overoptimisation
from pipelines.models.reward import registry
from pipelines.rlhf.report import best_of_n_choosers, compare_policies, flat_curve, policy_table
from stages.reward_common import relative


def _read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _json(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def run(ctx: StageContext) -> None:
    ppo = {folder.name: (_json(folder / "metrics.json"), _read_csv(folder / "plots" / "overopt.csv"))
           for folder in ctx.inputs("ppo")}
    bon = ctx.input("best_of_n")
    bon_metrics, bon_curve = _json(bon / "metrics.json"), _read_csv(bon / "plots" / "best_of_n.csv")
    proxies = list(ctx.block("rlhf")["reward_models"])
    names = {*proxies, *best_of_n_choosers(bon_curve), *(m["reward_model"] for m, _ in ppo.values())}
    titles = {name: (registry.get(name).title, registry.get(name).pick_rule) for name in names}
    report = compare_policies(ppo, _json(ctx.input("dpo") / "metrics.json"), bon_metrics, bon_curve, proxies, titles)
    out = ctx.output("out")
    plot_overoptimisation(report.series, out / "plots" / "overoptimisation.png", sft_gold=report.sft_gold)
    write_csv(flat_curve(report.series), out / "plots" / "overoptimisation.csv", ["method", "sqrt_kl", "gold", "proxy_gain"])
    write_text_atomic(out / "comparison.md", "# Policies on held-out prompts\n\n"
                      f"SFT gold reward on the same prompts: {report.sft_gold:.3f}. Intervals: 95% bootstrap over "
                      "prompts. KL: Monte-Carlo for sampled policies, log n - (n-1)/n for best-of-n.\n\n"
                      + policy_table(report.policies, proxies, titles))
    ctx.write_metrics(out, report.metrics)
    ctx.log_artifacts_on_success(f"{relative(ctx, ctx.output_path('out'))}/plots", "plots")


if __name__ == "__main__":
    stage_main("rlhf_compare", run, blocks=("rlhf",), inputs=("ppo*", "dpo", "best_of_n"), outputs=("out",))
