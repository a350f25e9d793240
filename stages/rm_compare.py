"""Stage `rm_compare`: GRAM against its ablations and the Bradley-Terry baseline, side by side.

Collects each reward model's harness metrics (in and out of distribution, adaptation family) into
one table, and measures best-of-n on the SFT policy's samples: GRAM picks by knockout, BT by
argmax, each pick scored by the gold reward, next to the oracle and a single sample.
"""
from __future__ import annotations

import json

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.atomic import write_text_atomic
from pipelines.data.jsonl import read_jsonl
from pipelines.data.loaders import read_preferences
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import best_of_n_curve, evaluate_pairs, plot_best_of_n
from pipelines.models.bt_reward import BTRewardModel
from pipelines.models.reward import GenerativeRewardModel

MODELS = {"gram": "GRAM", "gram_nopre": "GRAM without stage 1", "gram_eps0": "GRAM with eps = 0",
          "bt_rm": "Bradley-Terry RM"}
SPLITS = ("test_id", "test_ood", "adapt_test")


def _cell(m: dict, key: str) -> str:
    if key not in m:
        return "n/a"
    return f"{m[key]:.3f} [{m[key + '_ci95_low']:.3f}, {m[key + '_ci95_high']:.3f}]"


def comparison_table(per_model: dict[str, dict]) -> str:
    header = "| model | " + " | ".join(f"{s} acc (gold order)" for s in SPLITS) + " | ID position bias | ID ECE |"
    lines = [header, "|" + "---|" * (len(SPLITS) + 3)]
    for name, m in per_model.items():
        cells = [_cell(m, f"{s}/acc_gold") for s in SPLITS]
        lines.append(f"| {MODELS[name]} | " + " | ".join(cells) +
                     f" | {m['test_id/position_bias']:.3f} | {m['test_id/ece']:.3f} |")
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("rm_compare")
    per_model = {name: json.loads((ctx.root / f"models/{name}/metrics.json").read_text()) for name in MODELS}
    pool = read_jsonl(ctx.root / "data/sft_samples/samples.jsonl")
    ns = tuple(int(n) for n in p["best_of_n"])
    pool = [row for row in pool if len(row["samples"]) >= max(ns)]
    prompts = [{"prompt": r["prompt"], "spec": r["spec"]} for r in pool]
    samples = [r["samples"] for r in pool]
    batch = int(p["batch_size"])
    gram = GenerativeRewardModel.load(str(ctx.root / "models/gram/model"))
    bt = BTRewardModel.load(str(ctx.root / "models/bt_rm/model"))
    curves = {
        "GRAM (knockout)": best_of_n_curve(lambda ps, cs: gram.best_of_n_knockout_many(ps, cs, batch_size=batch),
                                           prompts, samples, ns=ns, seed=ctx.seed, n_bootstrap=int(p["bootstrap"])),
        "BT (argmax)": best_of_n_curve(lambda ps, cs: bt.best_of_n_argmax_many(ps, cs, batch_size=batch),
                                       prompts, samples, ns=ns, seed=ctx.seed, n_bootstrap=int(p["bootstrap"])),
    }
    out = ctx.output("models/rm_compare")
    table = comparison_table(per_model)
    write_text_atomic(out / "comparison.md", "# Reward models on the simulated world\n\n"
                      "Accuracy against the gold reward's ordering, 95% bootstrap intervals.\n\n" + table)
    plot_best_of_n(curves, out / "plots" / "best_of_n.png")
    rows = [{"n": g["n"], "gram": g["gold_mean"], "bt": b["gold_mean"], "oracle": g["oracle_gold_mean"],
             "single_sample": g["first_sample_gold_mean"], "kl_bound": g["kl_bound"]}
            for g, b in zip(curves["GRAM (knockout)"], curves["BT (argmax)"])]
    write_csv(rows, out / "plots" / "best_of_n.csv", ["n", "gram", "bt", "oracle", "single_sample", "kl_bound"])
    metrics: dict = {"n_prompts": len(prompts)}
    for name, m in per_model.items():
        for split in SPLITS:
            for key in ("acc_gold", "acc_label"):
                if f"{split}/{key}" in m:
                    metrics[f"{name}/{split}/{key}"] = m[f"{split}/{key}"]
    for label, key in (("GRAM (knockout)", "gram"), ("BT (argmax)", "bt")):
        for row in curves[label]:
            metrics[f"best_of_n/{key}/n{row['n']}"] = round(row["gold_mean"], 4)
    for row in curves["GRAM (knockout)"]:
        metrics[f"best_of_n/oracle/n{row['n']}"] = round(row["oracle_gold_mean"], 4)
    extra = p.get("extra_eval") or {}
    if extra.get("source"):
        metrics.update(_score_extra(ctx, extra, {"gram": gram, "bt": bt}, batch))
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success("models/rm_compare", "report")


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


if __name__ == "__main__":
    stage_main("rm_compare", run)
