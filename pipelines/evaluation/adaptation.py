"""Adapting reward models to a new task family with few labels: accuracy against the label budget.

For each budget (0 = no adaptation) every starting model is loaded afresh, fine-tuned on the first
`budget` labeled pairs of the family with the same training config, and measured on its test split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from pipelines.evaluation.reward_eval import evaluate_pairs
from pipelines.models.reward import registry
from pipelines.training.rng import set_seed

KEPT = ("acc_gold", "acc_gold_ci95_low", "acc_gold_ci95_high", "acc_label")


def adaptation_curve(inits: Sequence[tuple[str, str, Path]], budgets: Sequence[int], train_records: list[dict],
                     test_records: list[dict], cfg, seed: int, max_length: int, ev: Mapping,
                     label_smoothing: float = 0.0,
                     on_result: Callable[[str, int, dict], None] | None = None) -> tuple[dict, list[dict]]:
    """(flat metrics "<init>/b<budget>/<key>", one plot row per budget) for `inits` = (name, registry kind, folder).

    Each (budget, init) starts from the global seed, so adding an init does not change the others.
    """
    metrics: dict = {}
    rows = []
    for budget in sorted({int(b) for b in budgets}):
        row: dict = {"budget": budget}
        for name, kind, model_dir in inits:
            entry = registry.get(kind)
            set_seed(seed)
            scorer = entry.load(model_dir, max_length=max_length)
            if budget > 0:
                if entry.finetune is None:
                    raise ValueError(f"reward model {kind!r} cannot be fine-tuned (its registry entry has no finetune)")
                entry.finetune(scorer, train_records[:budget], cfg, seed=seed, label_smoothing=label_smoothing)
            m, _ = evaluate_pairs(scorer, test_records, "adapt_test", seed=seed, n_bootstrap=int(ev["bootstrap"]),
                                  batch_size=int(ev["batch_size"]))
            for key in KEPT:
                metrics[f"{name}/b{budget}/{key}"] = round(m[f"adapt_test/{key}"], 4)
            row[name] = round(m["adapt_test/acc_gold"], 4)
            row[f"{name}_low"], row[f"{name}_high"] = (round(m["adapt_test/acc_gold_ci95_low"], 4),
                                                       round(m["adapt_test/acc_gold_ci95_high"], 4))
            if on_result is not None:
                on_result(name, budget, m)
        rows.append(row)
    return metrics, rows
