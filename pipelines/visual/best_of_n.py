"""Best-of-n with the visual policy: each reward model picks among the first n samples, the oracle grades the pick.

The policy samples max(ns) responses per prompt once; every chooser picks from that one pool
(a reward model scores the whole pool once and its pick among the first n is the argmax of the
first n rewards), so choosers and n differ only in the pick. A random pick and the oracle's own pick
(fewest hallucinations, then most recall) bound them. The random pick is scored by its expectation, the
mean over the first n samples, rather than by one drawn sample: the same baseline without the draw's noise.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci
from pipelines.models.vlm.encoding import Layout

from .oracle import oracle_scores
from .policy import sample_responses

BON_COLUMNS = ["chooser", "n", "hallucination_rate", "hallucination_rate_ci95_low", "hallucination_rate_ci95_high",
               "recall"]


def sample_pool(vlm, tokenizer, prompts: Sequence[dict], images: Callable, n: int, max_length: int,
                max_new_tokens: int, temperature: float, seed: int) -> list[list[str]]:
    """`n` policy samples per prompt record (reproducible for a seed)."""
    layout = Layout.of(vlm, tokenizer, int(max_length))
    return sample_responses(vlm, layout, prompts, [images(r) for r in prompts], n=n,
                            max_new_tokens=int(max_new_tokens), temperature=float(temperature), seed=seed)


def reward_picks(scorer, prompts: Sequence[dict], samples: Sequence[Sequence[str]], ns: Sequence[int]
                 ) -> dict[int, np.ndarray]:
    """For each n, the index of the highest-reward sample among the first n (the scorer's `score`, one pass)."""
    top = len(samples[0])
    flat = scorer.score([r for r in prompts for _ in range(top)], [y for ys in samples for y in ys])
    reward = np.asarray(flat).reshape(len(prompts), top)
    return {n: reward[:, :n].argmax(axis=1) for n in ns}


def best_of_n_table(prompts: Sequence[dict], samples: Sequence[Sequence[str]], ns: Sequence[int],
                    model_picks: Mapping[str, Mapping[int, np.ndarray]], n_boot: int, seed: int
                    ) -> tuple[list[dict], dict]:
    """Rows (chooser, n, hallucination rate with its 95% CI, recall) and metrics, paired RoVRM differences included."""
    ns = sorted({int(n) for n in ns})
    top = ns[-1]
    graded = oracle_scores([r for r in prompts for _ in range(top)], [y for ys in samples for y in ys])
    shape = (len(prompts), top)
    hall, recall = graded["hallucination_rate"].reshape(shape), graded["recall"].reshape(shape)
    gold = graded["gold"].reshape(shape)
    rows_idx = np.arange(len(prompts))
    picks: dict[str, Mapping[int, np.ndarray]] = dict(model_picks)
    # the oracle's pick: fewest hallucinations, then most recall (the floor any chooser can reach)
    picks["oracle"] = {n: np.array([min(range(n), key=lambda j: (hall[i, j], -recall[i, j]))
                                    for i in range(len(prompts))]) for n in ns}

    def picked(chooser: str, n: int, values: np.ndarray) -> np.ndarray:
        """Per prompt, the graded value of the chooser's pick among the first n (random: the mean of the n)."""
        if chooser == "random":
            return values[:, :n].mean(axis=1)
        return values[rows_idx, picks[chooser][n]]

    choosers = [*model_picks, "random", "oracle"]
    rows, metrics = [], {}
    for chooser in choosers:
        for n in ns:
            h, r = picked(chooser, n, hall), picked(chooser, n, recall)
            mean, low, high = bootstrap_mean_ci(h, n_boot, seed)
            rows.append({"chooser": chooser, "n": n, "hallucination_rate": mean, "hallucination_rate_ci95_low": low,
                         "hallucination_rate_ci95_high": high, "recall": float(r.mean())})
            metrics.update({f"bon/{chooser}/n{n}/hallucination_rate": round(mean, 5),
                            f"bon/{chooser}/n{n}/hallucination_rate_ci95_low": round(low, 5),
                            f"bon/{chooser}/n{n}/hallucination_rate_ci95_high": round(high, 5),
                            f"bon/{chooser}/n{n}/recall": round(float(r.mean()), 5)})
    # paired over prompts at the largest n: hallucination rate (lower is better) and gold = recall - hallucination,
    # since a chooser could cut hallucinations by picking empty answers (they state nothing false)
    for other in ("visual_only", "random"):
        for name, values in (("hallucination_rate", hall), ("gold", gold)):
            d, d_low, d_high = paired_difference_ci(picked("rovrm", top, values), picked(other, top, values),
                                                    n_boot, seed)
            key = f"bon/n{top}/{name}/rovrm_minus_{other}"
            metrics.update({key: round(d, 5), f"{key}_ci95_low": round(d_low, 5), f"{key}_ci95_high": round(d_high, 5)})
    for chooser in choosers:
        metrics[f"bon/{chooser}/n{top}/gold"] = round(float(picked(chooser, top, gold).mean()), 5)
    metrics.update({"bon/n_prompts": len(prompts), "bon/sample_hallucination_rate": round(float(hall.mean()), 5)})
    return rows, metrics
