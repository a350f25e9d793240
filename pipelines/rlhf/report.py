"""Every policy side by side: the comparison table, the over-optimisation series, flat metrics.

Plain inputs: each PPO run's metrics and held-out curve, DPO's metrics, best-of-n's metrics and curve,
and how to name each reward model (`titles`: name -> (title, pick rule), e.g. "GRAM", "knockout").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

METRIC_KEYS = ("gold", "gold_gain_vs_sft", "gold_gain_vs_sft_ci95_low", "win_rate_vs_sft", "kl")


@dataclass
class PolicyReport:
    policies: dict[str, dict]            # label -> metrics
    series: dict[str, list[dict]]        # label -> points (sqrt_kl, gold, proxy_gain)
    sft_gold: float
    metrics: dict


def _ci(m: Mapping, key: str) -> str:
    if f"{key}_ci95_low" not in m:
        return f"{m[key]:.3f}"
    return f"{m[key]:+.3f} [{m[key + '_ci95_low']:+.3f}, {m[key + '_ci95_high']:+.3f}]" if "gain" in key else \
        f"{m[key]:.3f} [{m[key + '_ci95_low']:.3f}, {m[key + '_ci95_high']:.3f}]"


def policy_table(policies: Mapping[str, Mapping], proxies: Sequence[str], titles: Mapping[str, tuple[str, str]]) -> str:
    """Markdown table: gold reward, gain and win rate vs SFT with intervals, each proxy, KL."""
    head = ["policy", "gold reward", "gold gain vs SFT", "gold win rate vs SFT",
            *(f"{titles[p][0]} proxy" for p in proxies), "KL to SFT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in policies.items():
        cells = [name, _ci(m, "gold"), _ci(m, "gold_gain_vs_sft"), _ci(m, "win_rate_vs_sft"),
                 *(f"{m[f'proxy/{p}']:.3f}" for p in proxies), f"{m['kl']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_of_n_choosers(bon_curve: Sequence[Mapping]) -> list[str]:
    """The choosers of best-of-n's curve rows, in the order the stage ran them (its CSV columns "<chooser>_proxy")."""
    return [key[: -len("_proxy")] for key in (bon_curve[0] if bon_curve else {}) if key.endswith("_proxy")]


def _slug(label: str) -> str:
    return label.split(",")[0].lower().replace(" ", "_").replace("-", "_") + (
        "_" + label.split(", ")[1].split()[0].lower() if ", " in label else "")


def compare_policies(ppo: Mapping[str, tuple[Mapping, list[dict]]], dpo: Mapping, bon_metrics: Mapping,
                     bon_curve: list[dict], proxies: Sequence[str],
                     titles: Mapping[str, tuple[str, str]]) -> PolicyReport:
    """`ppo`: run name -> (metrics, over-optimisation curve rows); `bon_curve`: best-of-n's CSV rows."""
    choosers = best_of_n_choosers(bon_curve)
    top_n = int(max(r["n"] for r in bon_curve))
    at = lambda rm, n: {k.split("/", 2)[2]: v for k, v in bon_metrics.items() if k.startswith(f"{rm}/n{n}/")}
    ppo_label = {name: f"PPO, {titles[m['reward_model']][0]} reward" for name, (m, _) in ppo.items()}
    policies = {ppo_label[name]: dict(m) for name, (m, _) in ppo.items()}
    policies["DPO"] = dict(dpo)
    for rm in choosers:
        policies[f"best-of-{top_n}, {titles[rm][0]} {titles[rm][1]}"] = at(rm, top_n)
    sft_gold = policies["DPO"]["sft_gold"]

    series: dict[str, list[dict]] = {}
    std_of: dict[str, float] = {}
    for name, (m, rows) in ppo.items():
        std = m["reward_norm_std"] or 1.0
        std_of.setdefault(m["reward_model"], std)
        base = rows[0]["proxy"]
        series[ppo_label[name]] = [{**r, "proxy_gain": (r["proxy"] - base) / std} for r in rows]
    for rm in choosers:
        std = std_of.get(rm, 1.0)
        base = min(bon_curve, key=lambda r: r["n"])[f"{rm}_proxy"]
        series[f"best-of-n, {titles[rm][0]}"] = [{"n": r["n"], "sqrt_kl": r["sqrt_kl"], "gold": r[f"{rm}_gold"],
                                                  "proxy_gain": (r[f"{rm}_proxy"] - base) / std} for r in bon_curve]
    series["DPO"] = [{"sqrt_kl": policies["DPO"]["sqrt_kl"], "gold": policies["DPO"]["gold"], "proxy_gain": None}]

    metrics: dict = {"sft_gold": sft_gold}
    keys = (*METRIC_KEYS[:4], *(f"proxy/{p}" for p in proxies), METRIC_KEYS[4])
    for label, m in policies.items():
        metrics[_slug(label)] = {k: m[k] for k in keys}
    for name in ppo:
        curve = series[ppo_label[name]]
        metrics[name + "_curve_peak"] = {"gold": round(max(p["gold"] for p in curve), 4),
                                         "sqrt_kl_at_peak": round(max(curve, key=lambda p: p["gold"])["sqrt_kl"], 4)}
    return PolicyReport(policies, series, sft_gold, metrics)


def flat_curve(series: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """One CSV row per point: method, sqrt_kl, gold, proxy_gain ("" where a method has none)."""
    return [{"method": label, "sqrt_kl": round(p["sqrt_kl"], 4), "gold": round(p["gold"], 4),
             "proxy_gain": "" if p.get("proxy_gain") is None else round(p["proxy_gain"], 4)}
            for label, points in series.items() for p in points]
