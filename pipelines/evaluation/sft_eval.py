"""What supervised fine-tuning buys, in the world's own currency: gold reward of sampled responses."""
from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from pipelines.data.world import gold_reward
from pipelines.evaluation.sampling import generate_responses


def sample_gold(model, tokenizer, prompts: list[dict], ev: dict, seed: int) -> tuple[list[str], list[float]]:
    """Sampled responses to the prompts (settings from the eval block) and the gold reward of each."""
    responses = generate_responses(model, tokenizer, [r["prompt"] for r in prompts],
                                   max_new_tokens=int(ev["max_new_tokens"]), temperature=float(ev["temperature"]),
                                   seed=seed, batch_size=int(ev["batch_size"]))
    return responses, [gold_reward(r["spec"], text) for r, text in zip(prompts, responses)]


def gold_by_family(prompts: list[dict], columns: dict[str, list[float]], demos: list[dict]) -> list[dict]:
    """Mean of each column per prompt family, next to the demonstrations' mean gold in that family."""
    demo_gold = defaultdict(list)
    for d in demos:
        demo_gold[d["family"]].append(d["gold"])
    groups = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(prompts):
        for name, values in columns.items():
            groups[r["family"]][name].append(values[i])
    rows = []
    for family in sorted(groups):
        row = {"family": family, **{k: round(fmean(v), 4) for k, v in groups[family].items()}}
        row["gold_demos"] = round(fmean(demo_gold[family]), 4) if demo_gold[family] else None
        rows.append(row)
    return rows
