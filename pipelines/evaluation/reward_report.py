"""The reward-model comparison report: harness metrics side by side, and best-of-n curves as a table."""
from __future__ import annotations

from typing import Mapping, Sequence

SPLITS = ("test_id", "test_ood", "adapt_test")


def _cell(m: Mapping, key: str) -> str:
    if key not in m:
        return "n/a"
    return f"{m[key]:.3f} [{m[key + '_ci95_low']:.3f}, {m[key + '_ci95_high']:.3f}]"


def comparison_table(per_model: Mapping[str, Mapping], labels: Mapping[str, str]) -> str:
    """Markdown: gold-order accuracy per split with its interval, ID position bias and ECE, one row per model."""
    header = "| model | " + " | ".join(f"{s} acc (gold order)" for s in SPLITS) + " | ID position bias | ID ECE |"
    lines = [header, "|" + "---|" * (len(SPLITS) + 3)]
    for name, m in per_model.items():
        cells = [_cell(m, f"{s}/acc_gold") for s in SPLITS]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) +
                     f" | {m['test_id/position_bias']:.3f} | {m['test_id/ece']:.3f} |")
    return "\n".join(lines) + "\n"


def harness_metrics(per_model: Mapping[str, Mapping]) -> dict:
    """"<model>/<split>/acc_gold|acc_label" for every model and split that has them."""
    metrics: dict = {}
    for name, m in per_model.items():
        for split in SPLITS:
            for key in ("acc_gold", "acc_label"):
                if f"{split}/{key}" in m:
                    metrics[f"{name}/{split}/{key}"] = m[f"{split}/{key}"]
    return metrics


def best_of_n_table(curves: Mapping[str, Sequence[Mapping]]) -> tuple[list[dict], list[str], dict]:
    """(CSV rows, columns, metrics) of best-of-n curves keyed by chooser (rows from `best_of_n_curve*`).

    The oracle, single-sample and KL columns come from the first curve: they depend only on the samples.
    """
    names = list(curves)
    first = curves[names[0]]
    rows = [{"n": row["n"], **{name: curves[name][i]["gold_mean"] for name in names},
             "oracle": row["oracle_gold_mean"], "single_sample": row["first_sample_gold_mean"],
             "kl_bound": row["kl_bound"]} for i, row in enumerate(first)]
    metrics = {f"best_of_n/{name}/n{row['n']}": round(row["gold_mean"], 4) for name in names for row in curves[name]}
    metrics.update({f"best_of_n/oracle/n{row['n']}": round(row["oracle_gold_mean"], 4) for row in first})
    return rows, ["n", *names, "oracle", "single_sample", "kl_bound"], metrics
