"""Stage `rlhf_compare`: every policy side by side, and the over-optimisation curve.

Reads the PPO (GRAM and BT reward), DPO and best-of-n results, writes a comparison table, the
gold- and proxy-reward-against-sqrt(KL) figure with its CSV for `dvc plots`, and flat metrics.
"""
from __future__ import annotations

import csv
import json

from pipelines.atomic import write_text_atomic
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.rlhf_plots import plot_overoptimisation

PPO = {"ppo_gram": "PPO, GRAM reward", "ppo_bt": "PPO, BT reward"}


def _read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _ci(m: dict, key: str) -> str:
    if f"{key}_ci95_low" not in m:
        return f"{m[key]:.3f}"
    return f"{m[key]:+.3f} [{m[key + '_ci95_low']:+.3f}, {m[key + '_ci95_high']:+.3f}]" if "gain" in key else \
        f"{m[key]:.3f} [{m[key + '_ci95_low']:.3f}, {m[key + '_ci95_high']:.3f}]"


def policy_table(policies: dict[str, dict]) -> str:
    lines = ["| policy | gold reward | gold gain vs SFT | gold win rate vs SFT | GRAM proxy | BT proxy | KL to SFT |",
             "|---|---|---|---|---|---|---|"]
    for name, m in policies.items():
        lines.append(f"| {name} | {_ci(m, 'gold')} | {_ci(m, 'gold_gain_vs_sft')} | {_ci(m, 'win_rate_vs_sft')} | "
                     f"{m['proxy/gram']:.3f} | {m['proxy/bt']:.3f} | {m['kl']:.2f} |")
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> None:
    root = ctx.root
    load = lambda rel: json.loads((root / rel).read_text(encoding="utf-8"))
    bon = load("models/best_of_n/metrics.json")
    top_n = max(int(k.split("/")[1][1:]) for k in bon if k.startswith("gram/n"))
    at = lambda rm, n: {k.split("/", 2)[2]: v for k, v in bon.items() if k.startswith(f"{rm}/n{n}/")}
    policies = {label: load(f"models/{name}/metrics.json") for name, label in PPO.items()}
    policies["DPO"] = load("models/dpo/metrics.json")
    policies[f"best-of-{top_n}, GRAM knockout"] = at("gram", top_n)
    policies[f"best-of-{top_n}, BT argmax"] = at("bt", top_n)
    sft_gold = policies["DPO"]["sft_gold"]

    series: dict[str, list[dict]] = {}
    flat_curve = []
    for name, label in PPO.items():
        std = policies[label]["reward_norm_std"] or 1.0
        rows = _read_csv(root / f"models/{name}/plots/overopt.csv")
        base = rows[0]["proxy"]
        series[label] = [{**r, "proxy_gain": (r["proxy"] - base) / std} for r in rows]
    bon_rows = _read_csv(root / "models/best_of_n/plots/best_of_n.csv")
    for rm, label in (("gram", "best-of-n, GRAM"), ("bt", "best-of-n, BT")):
        std = policies[PPO[f"ppo_{rm}"]]["reward_norm_std"] or 1.0
        base = min(bon_rows, key=lambda r: r["n"])[f"{rm}_proxy"]
        series[label] = [{"n": r["n"], "sqrt_kl": r["sqrt_kl"], "gold": r[f"{rm}_gold"],
                          "proxy_gain": (r[f"{rm}_proxy"] - base) / std} for r in bon_rows]
    series["DPO"] = [{"sqrt_kl": policies["DPO"]["sqrt_kl"], "gold": policies["DPO"]["gold"], "proxy_gain": None}]
    for label, points in series.items():
        flat_curve += [{"method": label, "sqrt_kl": round(p["sqrt_kl"], 4), "gold": round(p["gold"], 4),
                        "proxy_gain": "" if p.get("proxy_gain") is None else round(p["proxy_gain"], 4)} for p in points]

    out = ctx.output("models/rlhf_compare")
    plot_overoptimisation(series, out / "plots" / "overoptimisation.png", sft_gold=sft_gold)
    write_csv(flat_curve, out / "plots" / "overoptimisation.csv", ["method", "sqrt_kl", "gold", "proxy_gain"])
    write_text_atomic(out / "comparison.md", "# Policies on held-out prompts\n\n"
                      f"SFT gold reward on the same prompts: {sft_gold:.3f}. Intervals: 95% bootstrap over prompts. "
                      "KL: Monte-Carlo for sampled policies, log n - (n-1)/n for best-of-n.\n\n" + policy_table(policies))
    metrics: dict = {"sft_gold": sft_gold}
    keys = ("gold", "gold_gain_vs_sft", "gold_gain_vs_sft_ci95_low", "win_rate_vs_sft", "proxy/gram", "proxy/bt", "kl")
    for label, m in policies.items():
        slug = label.split(",")[0].lower().replace(" ", "_").replace("-", "_") + (
            "_" + label.split(", ")[1].split()[0].lower() if ", " in label else "")
        metrics[slug] = {k: m[k] for k in keys}
    for name, label in PPO.items():
        curve = series[label]
        metrics[name + "_curve_peak"] = {"gold": round(max(p["gold"] for p in curve), 4),
                                         "sqrt_kl_at_peak": round(max(curve, key=lambda p: p["gold"])["sqrt_kl"], 4)}
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success("models/rlhf_compare/plots", "plots")


if __name__ == "__main__":
    stage_main("rlhf_compare", run)
