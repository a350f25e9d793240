"""`world_summary`: flat JSON metrics that show what a built world looks like (for logging)."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import fmean
from typing import Any

from .labels import expected_agreement
from .oracle import gold_reward
from .params import WorldParams
from .responses import ERROR_TYPES


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 6) if values else None


def _prefs_metrics(name: str, records: list[dict], p: WorldParams) -> dict[str, Any]:
    """Label agreement (empirical vs analytic), gold means and the polite-style correlation."""
    agree = [r["label_agrees_with_gold"] for r in records if r["label_agrees_with_gold"] is not None]
    expected = [expected_agreement(r["gold_chosen"], r["gold_rejected"], p.label_temperature, p.flip_rate)
                for r in records]
    expected = [e for e in expected if e is not None]
    polite = {"correct": [], "error": []}
    for r in records:
        for side in ("chosen", "rejected"):
            bucket = "correct" if r[f"{side}_error_type"] == "correct" else "error"
            polite[bucket].append("polite_preamble" in r.get(f"{side}_style", ""))
    return {
        f"{name}/label_agreement": _mean([float(a) for a in agree]),
        f"{name}/expected_agreement": _mean(expected),
        f"{name}/gold_tie_rate": _mean([float(r["label_agrees_with_gold"] is None) for r in records]),
        f"{name}/gold_chosen_mean": _mean([r["gold_chosen"] for r in records]),
        f"{name}/gold_rejected_mean": _mean([r["gold_rejected"] for r in records]),
        f"{name}/polite_rate_correct": _mean([float(x) for x in polite["correct"]]),
        f"{name}/polite_rate_error": _mean([float(x) for x in polite["error"]]),
    }


def _error_shares(prefix: str, types: list[str]) -> dict[str, float | None]:
    counts = Counter(types)
    return {f"{prefix}/{t}": (round(counts[t] / len(types), 6) if types else None) for t in ERROR_TYPES}


def world_summary(splits: dict[str, list[dict]], params: dict[str, Any] | WorldParams | None) -> dict[str, Any]:
    """Counts per split, label agreement vs its analytic expectation, gold means, error-type shares."""
    p = params if isinstance(params, WorldParams) else WorldParams.from_dict(params)
    out: dict[str, Any] = {f"count/{name}": len(records) for name, records in splits.items()}
    out["flip_rate"] = p.flip_rate
    out["label_temperature"] = p.label_temperature
    for name, records in splits.items():
        if name.startswith("prefs_"):
            out.update(_prefs_metrics(name, records, p))
            out[f"gold_mean/{name}"] = _mean([g for r in records for g in (r["gold_chosen"], r["gold_rejected"])])
        elif name.startswith("sft_"):
            out[f"gold_mean/{name}"] = _mean([r["gold"] for r in records])
        elif name == "unlabeled_pairs":
            out[f"gold_mean/{name}"] = _mean([gold_reward(r["spec"], r[k]) for r in records
                                              for k in ("response_a", "response_b")])
    train = splits.get("prefs_train", [])
    out.update(_error_shares("error_share/prefs_train",
                             [r[k] for r in train for k in ("chosen_error_type", "rejected_error_type")]))
    out.update(_error_shares("error_share/sft_train", [r["error_type"] for r in splits.get("sft_train", [])]))
    return out


def gold_by_error_type(splits: dict) -> list[dict]:
    """Mean gold reward of each named error type in the labeled training pairs (what the oracle rewards)."""
    scores = defaultdict(list)
    for record in splits["prefs_train"]:
        scores[record["chosen_error_type"]].append(record["gold_chosen"])
        scores[record["rejected_error_type"]].append(record["gold_rejected"])
    return [{"error_type": k, "gold_mean": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(scores.items())]
