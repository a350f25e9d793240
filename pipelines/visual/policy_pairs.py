"""Visual preference pairs the way real ones are made: the policy answers an image several times and
the gold oracle ranks its answers (the hallucination grader in `oracle.py`).

Pairs made by the noisy generator (`pairs.py`) differ in how many facts they state as much as in
whether those facts hold, so a reward model can rank them without looking at the image. Here both
answers of a pair are the policy's own samples for the same image and question: the preferred one is
the one the oracle grades higher (gold = recall - hallucination rate), so only the image tells
them apart, and they come from the distribution best-of-n will pick from. A labeler flip rate
(`label_noise`) keeps the labels as noisy as the generator's.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .best_of_n import sample_pool
from .oracle import oracle_scores
from .pairs import GOLD_DIGITS


def ranked_pairs(record: dict, samples: Sequence[str], gold: Sequence[float], per_prompt: int, label_noise: float,
                 rng: np.random.Generator) -> list[dict]:
    """Up to `per_prompt` distinct (better, worse) sample pairs of one prompt, drawn uniformly from the
    pairs whose gold differs and whose texts differ; none when every sample grades the same."""
    candidates = [(i, j) for i in range(len(samples)) for j in range(len(samples))
                  if gold[i] > gold[j] and samples[i] != samples[j]]
    picks = rng.choice(len(candidates), size=min(per_prompt, len(candidates)), replace=False) if candidates else []
    out = []
    for k, idx in enumerate(sorted(int(x) for x in picks)):
        better, worse = candidates[idx]
        flipped = bool(rng.random() < label_noise)
        chosen, rejected = (worse, better) if flipped else (better, worse)
        out.append({"id": f"{record['id']}-p{k}", "kind": "visual", "prompt": record["prompt"],
                    "chosen": samples[chosen], "rejected": samples[rejected],
                    "gold_chosen": round(float(gold[chosen]), GOLD_DIGITS),
                    "gold_rejected": round(float(gold[rejected]), GOLD_DIGITS),
                    "label_agrees_with_gold": not flipped, "family": record.get("family"), "image": record["image"],
                    "spec": {"scene": record["spec"]["scene"], "prompt": record["spec"]["prompt"], "source": "policy"}})
    return out


def policy_pairs(vlm, tokenizer, records: Sequence[dict], images: Callable, *, n_samples: int, per_prompt: int,
                 max_length: int, max_new_tokens: int, temperature: float, label_noise: float, seed: int
                 ) -> list[dict]:
    """Pairs of policy samples for each visual record (its image and question), ranked by the oracle.

    Records need the generated world's scene graph (`spec.scene`): real visual pairs have no oracle."""
    missing = [r.get("id") for r in records if not (r.get("spec") or {}).get("scene")]
    if missing:
        raise ValueError(f"policy-sample pairs need scene graphs for the oracle; records without one: {missing[:5]}")
    prompts = [{**r, "prompt": r["spec"]["prompt"]["question"]} for r in records]
    samples = sample_pool(vlm, tokenizer, prompts, images, int(n_samples), max_length, max_new_tokens, temperature, seed)
    flat = oracle_scores([r for r in prompts for _ in range(n_samples)], [y for ys in samples for y in ys])
    gold = flat["gold"].reshape(len(prompts), n_samples)
    rng = np.random.default_rng(seed)
    return [pair for r, ys, g in zip(prompts, samples, gold)
            for pair in ranked_pairs(r, ys, g, int(per_prompt), float(label_noise), rng)]
