"""Stage `rovrm_compare`: RoVRM against the visual-only RM, in accuracy and in best-of-n use.

Best-of-n: the visual policy samples `max(ns)` responses per held-out prompt (fresh scenes); each
reward model picks its best among the first n; the gold oracle scores the pick's hallucination rate
and recall (a random pick and the oracle's own pick bound the choosers). Accuracy: every trained
visual RM (RoVRM, visual-only, each ablation) against RoVRM on the same held-out pairs, as a paired
bootstrap difference. The `claims/` metrics say which of the paper's claims held in this run.
"""
from __future__ import annotations

import csv

import numpy as np

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_metrics import gold_order_correctness
from pipelines.visual.encoding import Layout
from pipelines.visual.policy import sample_responses
from pipelines.visual.reward import load_visual_rm
from pipelines.visual.vlm import load_vlm
from stages.visual_common import POLICY, oracle_scores, policy_images, world_records
from stages.visual_plots import plot_best_of_n

CHOOSERS = {"rovrm": "models/rovrm/model", "visual_only": "models/rovrm_visual_only/model"}


def _pair_credit(path) -> dict[str, float]:
    """Per-pair gold-order credit from a stage's pairs CSV (gold ties dropped); label credit on real pairs."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    p = np.array([float(r["p"]) for r in rows])
    if any(r["gold_chosen"] in ("", None) for r in rows):  # real test pairs: the label is all there is
        return {r["id"]: float(1.0 if x > 0.5 else 0.5 if x == 0.5 else 0.0) for r, x in zip(rows, p)}
    credit, used = gold_order_correctness(p, [float(r["gold_chosen"]) for r in rows],
                                          [float(r["gold_rejected"]) for r in rows])
    return {r["id"]: float(c) for r, c, u in zip(rows, credit, used) if u}


def accuracy_table(ctx: StageContext, n_boot: int) -> tuple[list[dict], dict]:
    sources = {"rovrm": ctx.root / "models/rovrm/plots/pairs.csv",
               "visual_only": ctx.root / "models/rovrm_visual_only/plots/pairs.csv"}
    for variant in ctx.block("visual")["ablations"]:
        sources[variant] = ctx.root / f"models/rovrm_ablations/plots/pairs_{variant}.csv"
    credits = {name: _pair_credit(path) for name, path in sources.items()}
    ids = sorted(set.intersection(*(set(c) for c in credits.values())))
    ref = np.array([credits["rovrm"][i] for i in ids])
    rows, metrics = [], {}
    for name, c in credits.items():
        values = np.array([c[i] for i in ids])
        mean, low, high = bootstrap_mean_ci(values, n_boot, ctx.seed)
        d, d_low, d_high = paired_difference_ci(ref, values, n_boot, ctx.seed)
        rows.append({"model": name, "acc_gold": mean, "ci_low": low, "ci_high": high,
                     "rovrm_minus_model": d, "diff_ci_low": d_low, "diff_ci_high": d_high})
        metrics.update({f"acc/{name}": round(mean, 5), f"acc/{name}_ci95_low": round(low, 5),
                        f"acc/{name}_ci95_high": round(high, 5)})
        if name != "rovrm":
            metrics.update({f"acc/rovrm_minus_{name}": round(d, 5), f"acc/rovrm_minus_{name}_ci95_low": round(d_low, 5),
                            f"acc/rovrm_minus_{name}_ci95_high": round(d_high, 5)})
    metrics["acc/n_pairs"] = len(ids)
    return rows, metrics


def best_of_n(ctx: StageContext, b: dict) -> tuple[list[dict], dict]:
    prompts = world_records(ctx, "bon_prompts.jsonl")[: int(b["n_prompts"])]
    ns = sorted({int(n) for n in b["ns"]})
    images = policy_images(ctx)
    vlm, tokenizer = load_vlm(str(ctx.root / POLICY))
    rm_cfg = ctx.block("visual")["rm"]
    layout = Layout.of(vlm, tokenizer, int(rm_cfg["max_length"]))
    samples = sample_responses(vlm, layout, prompts, [images(r) for r in prompts], n=ns[-1],
                               max_new_tokens=int(b["max_new_tokens"]), temperature=float(b["temperature"]), seed=ctx.seed)
    flat = [{"prompt": r["prompt"], "response": y, "image": r["image"]} for r, ys in zip(prompts, samples) for y in ys]
    graded = oracle_scores([r for r in prompts for _ in range(ns[-1])], [y for ys in samples for y in ys])
    shape = (len(prompts), ns[-1])
    hall, recall = graded["hallucination_rate"].reshape(shape), graded["recall"].reshape(shape)
    gold = graded["gold"].reshape(shape)
    picks: dict[str, dict[int, np.ndarray]] = {}
    for name, rel in CHOOSERS.items():
        reward = load_visual_rm(ctx.root / rel).rewards(flat, images).reshape(shape)
        picks[name] = {n: reward[:, :n].argmax(axis=1) for n in ns}
    picks["random"] = {n: np.zeros(len(prompts), dtype=np.int64) for n in ns}
    # the oracle's pick: fewest hallucinations, then most recall (the floor any chooser can reach)
    picks["oracle"] = {n: np.array([min(range(n), key=lambda j: (hall[i, j], -recall[i, j]))
                                    for i in range(len(prompts))]) for n in ns}
    rows, metrics, n_boot = [], {}, int(b["bootstrap"])
    rows_idx = np.arange(len(prompts))
    for chooser, by_n in picks.items():
        for n, pick in by_n.items():
            h, r = hall[rows_idx, pick], recall[rows_idx, pick]
            mean, low, high = bootstrap_mean_ci(h, n_boot, ctx.seed)
            rows.append({"chooser": chooser, "n": n, "hallucination_rate": mean, "hallucination_rate_ci95_low": low,
                         "hallucination_rate_ci95_high": high, "recall": float(r.mean())})
            metrics.update({f"bon/{chooser}/n{n}/hallucination_rate": round(mean, 5),
                            f"bon/{chooser}/n{n}/hallucination_rate_ci95_low": round(low, 5),
                            f"bon/{chooser}/n{n}/hallucination_rate_ci95_high": round(high, 5),
                            f"bon/{chooser}/n{n}/recall": round(float(r.mean()), 5)})
    # paired over prompts at the largest n: hallucination rate (lower is better) and gold = recall - hallucination,
    # since a chooser could cut hallucinations by picking empty answers (they state nothing false)
    top = ns[-1]
    for other in ("visual_only", "random"):
        for name, values in (("hallucination_rate", hall), ("gold", gold)):
            d, d_low, d_high = paired_difference_ci(values[rows_idx, picks["rovrm"][top]],
                                                    values[rows_idx, picks[other][top]], n_boot, ctx.seed)
            key = f"bon/n{top}/{name}/rovrm_minus_{other}"
            metrics.update({key: round(d, 5), f"{key}_ci95_low": round(d_low, 5), f"{key}_ci95_high": round(d_high, 5)})
    for chooser, by_n in picks.items():
        metrics[f"bon/{chooser}/n{top}/gold"] = round(float(gold[rows_idx, by_n[top]].mean()), 5)
    metrics.update({"bon/n_prompts": len(prompts), "bon/sample_hallucination_rate": round(float(hall.mean()), 5)})
    return rows, metrics


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    b = ctx.block("visual")["best_of_n"]
    acc_rows, metrics = accuracy_table(ctx, int(b["bootstrap"]))
    bon_rows, bon_metrics = best_of_n(ctx, b)
    metrics.update(bon_metrics)
    top = max(int(n) for n in b["ns"])
    metrics["claims/rovrm_more_accurate_than_visual_only"] = metrics["acc/rovrm_minus_visual_only_ci95_low"] > 0
    for other in ("visual_only", "random"):  # a claim holds when its paired 95% interval excludes 0
        metrics[f"claims/bon{top}_rovrm_fewer_hallucinations_than_{other}"] = \
            metrics[f"bon/n{top}/hallucination_rate/rovrm_minus_{other}_ci95_high"] < 0
        metrics[f"claims/bon{top}_rovrm_higher_gold_than_{other}"] = \
            metrics[f"bon/n{top}/gold/rovrm_minus_{other}_ci95_low"] > 0
    for variant in ctx.block("visual")["ablations"]:
        metrics[f"claims/rovrm_more_accurate_than_{variant}"] = metrics[f"acc/rovrm_minus_{variant}_ci95_low"] > 0
    out = ctx.output("models/rovrm_compare")
    write_csv(acc_rows, out / "plots" / "accuracy.csv", ["model", "acc_gold", "ci_low", "ci_high", "rovrm_minus_model",
                                                         "diff_ci_low", "diff_ci_high"])
    write_csv(bon_rows, out / "plots" / "best_of_n.csv", ["chooser", "n", "hallucination_rate",
                                                          "hallucination_rate_ci95_low", "hallucination_rate_ci95_high",
                                                          "recall"])
    plot_best_of_n(bon_rows, out / "plots" / "best_of_n.png", "Best-of-n on held-out visual prompts")
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("rovrm_compare", run, blocks=("visual",))
