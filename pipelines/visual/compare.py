"""Every visual reward model against RoVRM: paired accuracy on the same held-out pairs, and which claims held."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci

REFERENCE = "rovrm"
ACCURACY_COLUMNS = ["model", "acc_gold", "ci_low", "ci_high", "rovrm_minus_model", "diff_ci_low", "diff_ci_high"]


def accuracy_table(credits: Mapping[str, Mapping[str, float]], n_boot: int, seed: int) -> tuple[list[dict], dict]:
    """Each model's accuracy on the pairs all models share, and RoVRM minus it (paired bootstrap)."""
    ids = sorted(set.intersection(*(set(c) for c in credits.values())))
    ref = np.array([credits[REFERENCE][i] for i in ids])
    rows, metrics = [], {}
    for name, c in credits.items():
        values = np.array([c[i] for i in ids])
        mean, low, high = bootstrap_mean_ci(values, n_boot, seed)
        d, d_low, d_high = paired_difference_ci(ref, values, n_boot, seed)
        rows.append({"model": name, "acc_gold": mean, "ci_low": low, "ci_high": high,
                     "rovrm_minus_model": d, "diff_ci_low": d_low, "diff_ci_high": d_high})
        metrics.update({f"acc/{name}": round(mean, 5), f"acc/{name}_ci95_low": round(low, 5),
                        f"acc/{name}_ci95_high": round(high, 5)})
        if name != REFERENCE:
            metrics.update({f"acc/rovrm_minus_{name}": round(d, 5), f"acc/rovrm_minus_{name}_ci95_low": round(d_low, 5),
                            f"acc/rovrm_minus_{name}_ci95_high": round(d_high, 5)})
    metrics["acc/n_pairs"] = len(ids)
    return rows, metrics


def claims(metrics: Mapping, top: int) -> dict[str, bool]:
    """The paper's claims as booleans: a claim holds when its paired 95% interval excludes 0."""
    out = {"claims/rovrm_more_accurate_than_visual_only": metrics["acc/rovrm_minus_visual_only_ci95_low"] > 0}
    for other in ("visual_only", "random"):
        out[f"claims/bon{top}_rovrm_fewer_hallucinations_than_{other}"] = \
            metrics[f"bon/n{top}/hallucination_rate/rovrm_minus_{other}_ci95_high"] < 0
        out[f"claims/bon{top}_rovrm_higher_gold_than_{other}"] = \
            metrics[f"bon/n{top}/gold/rovrm_minus_{other}_ci95_low"] > 0
    return out


def ablation_claims(metrics: Mapping, ablations: Sequence[str]) -> dict[str, bool]:
    """RoVRM against each ablation: the claim holds when the paired 95% interval of the gap excludes 0."""
    return {f"claims/rovrm_more_accurate_than_{v}": metrics[f"acc/rovrm_minus_{v}_ci95_low"] > 0 for v in ablations}
