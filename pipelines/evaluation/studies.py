"""Statistics and plots of a study: per-seed results aggregated into intervals, claims and a figure.

Seeds are the unit of replication. Rows are plain dicts, one per finished grid cell, holding the cell's
grid values and `"<model>|<metric>"` results; `group_keys` are the grid keys other than the seed. For
every setting of those keys, each model metric gets its mean and 95% t-interval across seeds, and each
claim gets the interval of its per-seed differences: it is called reproduced only when the whole
interval is on its side. With a claim's `effect` (the paper's effect size, or the smallest effect worth
reporting) the report also says how many seeds a paired t-test needs to detect it with 80% power at the
spread these seeds showed (`seeds_needed`). Running the cells and reading/writing files is the caller's business
(`alignflow/study.py`); everything here takes and returns plain values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Claim:
    """`better` beats `worse` (each a (model label, metric) pair); lower wins when `lower_is_better`."""

    name: str
    better: tuple[str, str]  # (model label, metric)
    worse: tuple[str, str]
    lower_is_better: bool = False
    effect: float | None = None  # the difference worth detecting, in the metric's units (for `seeds_needed`)


def group_keys(grid: Mapping[str, list], seed_key: str) -> list[str]:
    """The grid keys a study reports separately: all but the seed."""
    return [k for k in grid if k != seed_key]


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and one-sample t-interval over seeds (scipy); with one seed the interval is undefined (nan)."""
    mean = fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    if stdev(values) == 0:
        return mean, mean, mean
    from scipy.stats import ttest_1samp

    interval = ttest_1samp(values, 0.0).confidence_interval(confidence_level=confidence)
    return mean, float(interval.low), float(interval.high)


def _order(item) -> tuple:
    """Sort grid settings numerically where they are numbers (250 before 1000)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in item[0])


def _groups(keys: Sequence[str], rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def summarise(rows: list[dict], keys: Sequence[str], models: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Mean and 95% t-interval across seeds of every model metric, per setting of the `keys`."""
    out = []
    for group, members in sorted(_groups(keys, rows).items(), key=_order):
        for label in models:
            for metric in metrics:
                values = [r[f"{label}|{metric}"] for r in members if r.get(f"{label}|{metric}") is not None]
                if not values:
                    continue
                mean, low, high = t_interval(values)
                out.append({**dict(zip(keys, group)), "model": label, "metric": metric,
                            "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(values)})
    return out


def seeds_needed(sd: float, effect: float, power: float = 0.8, alpha: float = 0.05, most: int = 1000) -> int | None:
    """Seeds a two-sided paired t-test needs to detect a mean difference `effect` with `power`, given the
    per-seed spread `sd` (noncentral t). None when `most` seeds would not do or the spread is unknown
    (one seed); 2 when the seeds did not differ at all."""
    if not effect or math.isnan(sd):
        return None
    if sd == 0:
        return 2
    from scipy.stats import nct, t

    for n in range(2, most + 1):
        crit = t.ppf(1 - alpha / 2, n - 1)
        shift = abs(effect) / (sd / math.sqrt(n))
        if nct.sf(crit, n - 1, shift) + nct.cdf(-crit, n - 1, shift) >= power:
            return n
    return None


def verdict(low: float, high: float) -> str:
    """A claim's verdict from the interval of its (oriented) per-seed differences."""
    if math.isnan(low):
        return "one seed: no interval"
    if low > 0:
        return "reproduced"
    if high < 0:
        return "reversed"
    return "inconclusive"


def judge_claims(rows: list[dict], keys: Sequence[str], claims: Sequence[Claim]) -> list[dict]:
    """Per claim and setting: the per-seed difference (oriented so > 0 supports the claim) and a verdict."""
    out = []
    for claim in claims:
        for group, members in sorted(_groups(keys, rows).items(), key=_order):
            diffs = []
            for r in members:
                a, b = r.get("|".join(claim.better)), r.get("|".join(claim.worse))
                if a is not None and b is not None:
                    diffs.append((b - a) if claim.lower_is_better else (a - b))
            if not diffs:
                continue
            mean, low, high = t_interval(diffs)
            sd = stdev(diffs) if len(diffs) > 1 else math.nan
            out.append({"claim": claim.name, **dict(zip(keys, group)), "difference": mean,
                        "ci_low": low, "ci_high": high, "n_seeds": len(diffs), "verdict": verdict(low, high),
                        "sd": sd, "effect": claim.effect,
                        "seeds_needed": seeds_needed(sd, claim.effect) if claim.effect else None})
    return out


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _row(cells: Sequence) -> str:
    """One markdown table row (a grid with no keys besides the seed adds no empty column)."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def claims_markdown(name: str, description: str, grid: Mapping[str, list], seed_key: str, summary: list[dict],
                    claims: list[dict]) -> str:
    """The study report: the claims table, then every model metric's mean and interval."""
    keys = group_keys(grid, seed_key)
    lines = [f"# Study `{name}`", "", description.strip(), "",
             f"Grid: {', '.join(f'{k} in {v}' for k, v in grid.items())}; seeds are `{seed_key}`. "
             "Intervals are 95% t-intervals across seeds.", "", "## Claims", "",
             _row(["claim", *keys, "difference", "95% CI", "seeds", "verdict", "seeds for 80% power at the effect"]),
             _row(["---"] * (len(keys) + 6))]
    for c in claims:
        if not c.get("effect"):
            power = "n/a"
        elif math.isnan(c.get("sd", math.nan)):
            power = "n/a (one seed: no spread)"
        else:
            power = f"{c['seeds_needed'] or '> 1000'} (effect {c['effect']:g}, sd {_fmt(c['sd'])})"
        lines.append(_row([c["claim"], *(c[k] for k in keys), _fmt(c["difference"]),
                           f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]", c["n_seeds"], c["verdict"], power]))
    lines += ["", "## Metrics", "", _row(["model", "metric", *keys, "mean", "95% CI", "seeds"]),
              _row(["---"] * (len(keys) + 5))]
    for s in summary:
        lines.append(_row([s["model"], s["metric"], *(s[k] for k in keys), _fmt(s["mean"]),
                           f"[{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]", s["n_seeds"]]))
    return "\n".join(lines) + "\n"


def plot_summary(summary: list[dict], path: Path, name: str, keys: Sequence[str], models: Sequence[str],
                 metrics: Sequence[str]) -> None:
    """One panel per metric: each model's mean and interval across the settings of `keys`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(s["metric"] == m for s in summary)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.8), dpi=110, squeeze=False)
    settings = [g for g, _ in sorted(((g, None) for g in {tuple(s[k] for k in keys) for s in summary}),
                                     key=_order)]
    labels = [", ".join(str(v) for v in setting) or "all" for setting in settings]
    width = 0.8 / max(1, len(models))
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            xs, ys, errs = [], [], [[], []]
            for j, setting in enumerate(settings):
                row = next((s for s in summary if s["metric"] == metric and s["model"] == model
                            and tuple(s[k] for k in keys) == setting), None)
                if row is None:
                    continue
                xs.append(j + i * width)
                ys.append(row["mean"])
                low = row["mean"] if math.isnan(row["ci_low"]) else row["ci_low"]
                high = row["mean"] if math.isnan(row["ci_high"]) else row["ci_high"]
                errs[0].append(row["mean"] - low)
                errs[1].append(high - row["mean"])
            ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=model)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))])
        ax.set_xticklabels(labels)
        ax.set_xlabel(", ".join(keys) or "")
        ax.set_title(metric)
        lows = [s["ci_low"] for s in summary if s["metric"] == metric and not math.isnan(s["ci_low"])]
        if lows:
            ax.set_ylim(bottom=max(0.0, min(lows) - 0.05))
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Study {name}: mean and 95% interval across seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
