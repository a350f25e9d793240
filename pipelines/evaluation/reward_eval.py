"""Evaluate reward models and judges on preference pairs and by best-of-n against the gold reward.

Programs against a small scorer protocol, so a Bradley-Terry reward model and a generative
judge (GRAM) go through the same code and produce the same flat metric keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from pipelines.data.world import gold_reward

from .bootstrap import bootstrap_mean_ci
from .reward_metrics import (
    accuracy_ci, as_vector, best_of_n_kl, expected_calibration_error, gold_order_correctness,
    pairwise_correctness, position_bias_rate,
)
from .reward_plots import plot_best_of_n, plot_reliability

__all__ = ["ChooseBest", "PairEvaluation", "PairScorer", "best_of_n_curve", "best_of_n_curve_from_picks", "evaluate_pairs", "plot_best_of_n",
           "plot_reliability", "score_pairs"]


@runtime_checkable
class PairScorer(Protocol):
    """Anything that says how likely ys1[i] is better than ys2[i] for prompts[i].

    Returns a dict of 1-D tensors/arrays: `p` (order-averaged), `p_order1` (y1 shown in position
    A) and `p_order2` (y1 shown in position B). Discriminative models return three equal arrays.
    A scorer whose samples need more than the prompt text (an image) may instead define
    `prob_first_better_records(records)`, given the records themselves (chosen as y1); the
    harness prefers it when present. A registry scorer returns `p` alone (a tensor): it stands for
    all three, so its position bias reads 0.
    """

    def prob_first_better(self, prompts: list[str], ys1: list[str], ys2: list[str]) -> dict: ...


ChooseBest = Callable[[list[str], list[list[str]]], list[int]]
"""(prompts, candidate_lists) -> index of the chosen candidate per prompt."""


@dataclass
class PairEvaluation:
    """Raw per-pair numbers behind the flat metrics, for calibration plots and paired tests."""

    ids: list[str]
    p: np.ndarray
    p_order1: np.ndarray
    p_order2: np.ndarray
    label_credit: np.ndarray
    label_bins: list[dict]
    families: list[str | None]
    gold_chosen: np.ndarray | None = None
    gold_rejected: np.ndarray | None = None
    gold_bins: list[dict] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _batch_output(out: Mapping, key: str, expected: int) -> np.ndarray:
    """One scorer output as a float vector; a missing order key falls back to the averaged `p`."""
    values = out.get(key, out.get("p"))
    if values is None:
        raise KeyError(f"scorer output lacks {key!r} and 'p'; got keys {sorted(out)}")
    arr = as_vector(values, f"scorer output {key!r}")
    if arr.size != expected:
        raise ValueError(f"scorer output {key!r} has {arr.size} values for a batch of {expected}")
    if (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"scorer output {key!r} is not a probability (outside [0, 1])")
    return arr


def score_pairs(scorer: PairScorer, records: Sequence[Mapping], batch_size: int = 16
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, p_order1, p_order2) of chosen-over-rejected for every record, in batches.

    The chosen response is always passed as ys1: the scorer's two presentation orders already
    cover position effects, so nothing here is randomised.
    """
    if not records:
        raise ValueError("score_pairs: no records to score")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: dict[str, list[np.ndarray]] = {"p": [], "p_order1": [], "p_order2": []}
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        if hasattr(scorer, "prob_first_better_records"):  # multimodal: the sample is more than its prompt text
            out = scorer.prob_first_better_records(batch)
        else:
            out = scorer.prob_first_better([r["prompt"] for r in batch], [r["chosen"] for r in batch],
                                           [r["rejected"] for r in batch])
        if not isinstance(out, Mapping):
            out = {"p": out}
        for key in parts:
            parts[key].append(_batch_output(out, key, len(batch)))
    return tuple(np.concatenate(parts[k]) for k in ("p", "p_order1", "p_order2"))  # type: ignore[return-value]


def _has_gold(record: Mapping) -> bool:
    return all(isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)
               for k in ("gold_chosen", "gold_rejected"))


def _put_ci(metrics: dict, key: str, credit: np.ndarray, n_bootstrap: int, seed: int) -> None:
    mean, low, high = accuracy_ci(credit, n_bootstrap, seed)
    metrics[key], metrics[f"{key}_ci95_low"], metrics[f"{key}_ci95_high"] = mean, low, high


def evaluate_pairs(scorer: PairScorer, records: Sequence[Mapping], split_name: str, seed: int = 0,
                   n_bootstrap: int = 1000, batch_size: int = 16, n_bins: int = 10
                   ) -> tuple[dict[str, float | int], PairEvaluation]:
    """(flat metrics, raw per-pair numbers) of a scorer on one split of preference records.

    Keys: `{split}/acc_label` (+ `_ci95_low/_high`), `{split}/position_bias`, `{split}/ece`,
    `{split}/n`; with gold fields `{split}/acc_gold` (+ CI), `{split}/n_gold` (non-tied pairs)
    and `{split}/ece_gold`; with a `family` field `{split}/family/<f>/acc_label`, `/n` and, given
    gold, `/acc_gold`. Real-data records (no gold, no family) get only the label metrics.
    """
    if not records:
        raise ValueError(f"evaluate_pairs: split {split_name!r} has no records")
    p, p1, p2 = score_pairs(scorer, records, batch_size)
    label_credit = pairwise_correctness(p)
    ece, label_bins = expected_calibration_error(p, np.ones_like(p), n_bins)
    pre = split_name
    metrics: dict[str, float | int] = {}
    _put_ci(metrics, f"{pre}/acc_label", label_credit, n_bootstrap, seed)
    metrics[f"{pre}/position_bias"] = position_bias_rate(p1, p2)
    metrics[f"{pre}/ece"] = ece
    metrics[f"{pre}/n"] = len(records)
    details = PairEvaluation(ids=[str(r.get("id", i)) for i, r in enumerate(records)], p=p, p_order1=p1,
                             p_order2=p2, label_credit=label_credit, label_bins=label_bins,
                             families=[r.get("family") for r in records])

    gold_mask = np.array([_has_gold(r) for r in records])
    gold_used = np.zeros(len(records), dtype=bool)
    gold_credit = np.zeros(len(records))
    if gold_mask.any():
        gc = np.array([r["gold_chosen"] if m else np.nan for r, m in zip(records, gold_mask)], dtype=np.float64)
        gr = np.array([r["gold_rejected"] if m else np.nan for r, m in zip(records, gold_mask)], dtype=np.float64)
        details.gold_chosen, details.gold_rejected = gc, gr
        credit, used = gold_order_correctness(p[gold_mask], gc[gold_mask], gr[gold_mask])
        gold_credit[gold_mask], gold_used[gold_mask] = credit, used
        metrics[f"{pre}/n_gold"] = int(gold_used.sum())
        if gold_used.any():
            _put_ci(metrics, f"{pre}/acc_gold", gold_credit[gold_used], n_bootstrap, seed)
            outcome = (gc[gold_used] > gr[gold_used]).astype(np.float64)
            metrics[f"{pre}/ece_gold"], details.gold_bins = expected_calibration_error(p[gold_used], outcome, n_bins)

    families = sorted({f for f in details.families if isinstance(f, str)})
    for fam in families:
        members = np.array([f == fam for f in details.families])
        metrics[f"{pre}/family/{fam}/acc_label"] = float(label_credit[members].mean())
        metrics[f"{pre}/family/{fam}/n"] = int(members.sum())
        fam_gold = members & gold_used
        if fam_gold.any():
            metrics[f"{pre}/family/{fam}/acc_gold"] = float(gold_credit[fam_gold].mean())
    return metrics, details


def _validate_bon_inputs(prompts: Sequence[Mapping], samples: Sequence[Sequence[str]], ns: Sequence[int]) -> list[int]:
    if not prompts:
        raise ValueError("best_of_n_curve: no prompts")
    if len(prompts) != len(samples):
        raise ValueError(f"best_of_n_curve: {len(prompts)} prompts but {len(samples)} sample lists")
    if not ns:
        raise ValueError("best_of_n_curve: ns is empty")
    ns_list = sorted({int(n) for n in ns})
    if ns_list[0] < 1 or any(int(n) != n for n in ns):
        raise ValueError(f"best_of_n_curve: every n must be an integer >= 1, got {list(ns)}")
    short = [i for i, s in enumerate(samples) if len(s) < ns_list[-1]]
    if short:
        raise ValueError(f"best_of_n_curve: prompt {short[0]} has {len(samples[short[0]])} samples, "
                         f"fewer than max(ns) = {ns_list[-1]} ({len(short)} prompts short)")
    return ns_list


def best_of_n_curve(choose_best: ChooseBest, prompts: Sequence[Mapping], samples: Sequence[Sequence[str]],
                    ns: Sequence[int] = (1, 2, 4, 8, 16), seed: int = 0, n_bootstrap: int = 1000,
                    gold_fn: Callable[[dict, str], float] = gold_reward) -> list[dict]:
    """Gold reward of the response a model picks among the first n samples, for each n.

    For n == 1 the chooser is not called: there is only one candidate. Rows as in
    `best_of_n_curve_from_picks`.
    """
    ns_list = _validate_bon_inputs(prompts, samples, ns)
    prompt_texts = [p["prompt"] for p in prompts]
    picks = {n: [0] * len(prompts) if n == 1 else choose_best(prompt_texts, [list(c[:n]) for c in samples])
             for n in ns_list}
    return best_of_n_curve_from_picks(picks, prompts, samples, seed=seed, n_bootstrap=n_bootstrap, gold_fn=gold_fn)


def best_of_n_curve_from_picks(picks: Mapping[int, Sequence[int]], prompts: Sequence[Mapping],
                               samples: Sequence[Sequence[str]], seed: int = 0, n_bootstrap: int = 1000,
                               gold_fn: Callable[[dict, str], float] = gold_reward) -> list[dict]:
    """The best-of-n curve of picks already made (n -> chosen index per prompt among the first n).

    Each row: n, gold_mean with its 95% bootstrap CI (over prompts), oracle_gold_mean (the gold
    argmax among the same n, the ceiling for any chooser), first_sample_gold_mean (a random pick,
    since samples are i.i.d.) and kl_bound = log n - (n-1)/n. Gold rewards are computed once per sample.
    """
    ns_list = _validate_bon_inputs(prompts, samples, list(picks))
    top = ns_list[-1]
    gold = np.array([[gold_fn(p["spec"], s) for s in cands[:top]] for p, cands in zip(prompts, samples)],
                    dtype=np.float64)
    rows = []
    for n in ns_list:
        chosen = np.asarray(picks[n], dtype=np.int64)
        if chosen.shape != (len(prompts),):
            raise ValueError(f"choose_best returned {chosen.size} picks for {len(prompts)} prompts (n={n})")
        if (chosen < 0).any() or (chosen >= n).any():
            raise ValueError(f"choose_best returned an index outside [0, {n}) for n={n}")
        picked = gold[np.arange(len(prompts)), chosen]
        mean, low, high = bootstrap_mean_ci(picked, n_bootstrap, seed)
        rows.append({"n": n, "gold_mean": mean, "gold_ci_low": low, "gold_ci_high": high,
                     "oracle_gold_mean": float(gold[:, :n].max(axis=1).mean()),
                     "first_sample_gold_mean": float(gold[:, 0].mean()),
                     "kl_bound": best_of_n_kl(n), "n_prompts": len(prompts)})
    return rows
