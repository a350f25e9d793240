"""Stage `lrhp_margin`: predict each pair's gold margin from its frozen LRHP vector, then train with it.

A ridge head on the training pairs' vectors predicts gold(chosen) - gold(rejected) for held-out pairs;
Spearman and MAE against the baselines (BT score gap, GRAM log-odds, length ratio, constant; each
mapped to the margin scale by a line fitted on the first `n_fit` training pairs). Then the margin-
aware BT loss -log sigmoid(r_w - r_l - scale * m), with m the head's out-of-fold prediction for each
training pair, against the plain BT loss at equal steps (gold-order accuracy on held-out pairs). Every
training pair's out-of-fold predicted margin goes to `margins.jsonl` (id, predicted_margin), which the
`dpo_margin` stage weights DPO with. Data without gold margins (real preference files) skip the stage's
measurements and say so in metrics.
"""
from __future__ import annotations

import numpy as np

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci
from pipelines.evaluation.plots import write_csv
from pipelines.lrhp.margin import (cross_fitted, length_ratio, line_fit, ridge_fit, ridge_predict, spearman,
                                   spearman_difference_ci)
from pipelines.lrhp.plots import plot_margins
from pipelines.lrhp.reward_training import gold_order_credit, score_gaps, train_bt
from pipelines.lrhp.vectors import load_vectors, vector_count
from pipelines.models.preference import gold_margin, read_pairs
from pipelines.models.reward.bt import BTRewardModel
from pipelines.models.reward.gram import GenerativeRewardModel
from stages.common import train_config


def _has_gold(records: list[dict]) -> bool:
    return all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
               for r in records for k in ("gold_chosen", "gold_rejected"))


def _gram_log_odds(gram: GenerativeRewardModel, records: list[dict], batch_size: int) -> np.ndarray:
    p = gram.prob_first_better([r["prompt"] for r in records], [r["chosen"] for r in records],
                               [r["rejected"] for r in records], batch_size)["p"].double().numpy()
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _baselines(ctx: StageContext, p: dict, fit: list[dict], test: list[dict], y_fit: np.ndarray) -> dict:
    """name -> predicted test margins of each single-score baseline, calibrated on the fit pairs."""
    bs = int(p["batch_size"])
    bt, gram = BTRewardModel.load(str(ctx.input("bt"))), GenerativeRewardModel.load(str(ctx.input("gram")))
    scores = {"bt_gap": (score_gaps(bt, fit, bs), score_gaps(bt, test, bs)),
              "gram_log_odds": (_gram_log_odds(gram, fit, bs), _gram_log_odds(gram, test, bs)),
              "length_ratio": (np.log(length_ratio(fit)), np.log(length_ratio(test)))}
    out = {}
    for name, (s_fit, s_test) in scores.items():
        a, b = line_fit(s_fit, y_fit)
        out[name] = a * s_test + b
    out["constant"] = np.full(len(test), float(y_fit.mean()))
    return out


def _margin_training(ctx: StageContext, p: dict, pool: list[dict], z_pool: np.ndarray, y_pool: np.ndarray,
                     test: list[dict], metrics: dict) -> None:
    """Plain vs margin-aware BT at equal steps on the same pairs, scored on the held-out pairs."""
    mb = p["margin_bt"]
    cfg = train_config(ctx, mb, "lrhp_margin.margin_bt")
    n = min(int(mb["n_train"]), len(pool))
    margins = float(mb["scale"]) * cross_fitted(z_pool[:n], y_pool[:n], float(p["alpha"]))
    credits = {}
    for name, m in (("plain", None), ("margin", margins)):
        rm, _ = train_bt(str(ctx.input("base")), pool[:n], cfg, int(mb["max_length"]), ctx.seed, margins=m)
        credits[name] = gold_order_credit(score_gaps(rm, test, int(p["batch_size"])), test)
        acc, lo, hi = bootstrap_mean_ci(credits[name], int(p["bootstrap"]), ctx.seed)
        metrics.update({f"margin_bt/{name}/acc_gold": round(acc, 5), f"margin_bt/{name}/acc_gold_ci95_low": round(lo, 5),
                        f"margin_bt/{name}/acc_gold_ci95_high": round(hi, 5)})
    d, lo, hi = paired_difference_ci(credits["margin"], credits["plain"], int(p["bootstrap"]), ctx.seed)
    metrics.update({"margin_bt/margin_minus_plain": round(d, 5), "margin_bt/margin_minus_plain_ci95_low": round(lo, 5),
                    "margin_bt/margin_minus_plain_ci95_high": round(hi, 5), "margin_bt/train_pairs": n})


def run(ctx: StageContext) -> None:
    ctx.use_seed("lrhp_seed")
    p = ctx.block("lrhp_margin")
    kind_column = str(ctx.block("lrhp")["kind_column"])
    folder = ctx.input("lrhp")
    pool = read_pairs(ctx.input("pool"), kind_column)
    test = read_pairs(ctx.input("test"), kind_column)[: vector_count(folder, "test")]
    out = ctx.output("out")
    if not (_has_gold(pool) and _has_gold(test)):
        ctx.write_metrics(out, {"skipped": f"no gold margins in {ctx.input('pool').name} or "
                                           f"{ctx.input('test').name}: margin prediction not scored"})
        return
    z_pool = load_vectors(folder, "pool", pool).double().numpy()
    z_test = load_vectors(folder, "test", test).double().numpy()
    n_test = min(int(p["n_test"]), len(test))
    test, z_test = test[:n_test], z_test[:n_test]
    y_pool = np.array([gold_margin(r) for r in pool])
    y_test = np.array([gold_margin(r) for r in test])
    preds = {"lrhp": ridge_predict(ridge_fit(z_pool, y_pool, float(p["alpha"])), z_test)}
    # out of fold: no pair's own gold margin predicts it (2 folds, as for the margin-aware BT)
    write_jsonl_atomic([{"id": str(r.get("id", i)), "predicted_margin": round(float(m), 6)}
                        for i, (r, m) in enumerate(zip(pool, cross_fitted(z_pool, y_pool, float(p["alpha"]))))],
                       out / "margins.jsonl")
    n_fit = min(int(p["n_fit"]), len(pool))
    preds.update(_baselines(ctx, p, pool[:n_fit], test, y_pool[:n_fit]))
    metrics: dict = {"margin/n_test": n_test, "margin/n_train": len(pool), "margin/n_fit_baselines": n_fit}
    for name, pred in preds.items():
        metrics[f"margin/{name}/spearman"] = round(spearman(pred, y_test), 5)
        metrics[f"margin/{name}/mae"] = round(float(np.abs(pred - y_test).mean()), 5)
    for other in ("bt_gap", "gram_log_odds", "length_ratio"):
        d, lo, hi = spearman_difference_ci(y_test, preds["lrhp"], preds[other], int(p["bootstrap"]), ctx.seed)
        metrics.update({f"margin/lrhp_minus_{other}/spearman": round(d, 5),
                        f"margin/lrhp_minus_{other}/spearman_ci95_low": round(lo, 5),
                        f"margin/lrhp_minus_{other}/spearman_ci95_high": round(hi, 5)})
    if p["margin_bt"]["enabled"]:
        _margin_training(ctx, p, pool, z_pool, y_pool, test, metrics)
    rows = [{"true": round(float(t), 5), **{k: round(float(v[i]), 5) for k, v in preds.items()}}
            for i, t in enumerate(y_test)]
    write_csv(rows, out / "plots" / "margins.csv", ["true", *preds])
    plot_margins(y_test, {k: v for k, v in preds.items() if k != "constant"}, out / "plots" / "margins.png",
                 "Held-out gold margin: predicted vs true")
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success(ctx.output_path("out") / "plots", "plots")


if __name__ == "__main__":
    stage_main("lrhp_margin", run, inputs=("base", "bt", "gram", "lrhp", "pool", "test"), outputs=("out",))
