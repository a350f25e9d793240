"""What the reward-model stages share: the evaluation splits and how a model is scored on them."""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.stage import StageContext
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import evaluate_pairs, plot_reliability

# split name -> world file; every reward model is measured on the same three.
EVAL_SPLITS = {"test_id": "prefs_test_id.jsonl", "test_ood": "prefs_test_ood.jsonl",
               "adapt_test": "prefs_adapt_test.jsonl"}


def eval_records(ctx: StageContext, split_file: str, n: int) -> list[dict]:
    return read_jsonl(ctx.root / "data/world" / split_file)[:n]


def evaluate_reward_model(ctx: StageContext, scorer, out: Path, ev: dict) -> dict:
    """Harness metrics on every evaluation split, with reliability plots under out/plots."""
    metrics: dict = {}
    for split, filename in EVAL_SPLITS.items():
        records = eval_records(ctx, filename, int(ev["n_pairs"]))
        split_metrics, details = evaluate_pairs(scorer, records, split, seed=ctx.seed,
                                                n_bootstrap=int(ev["bootstrap"]), batch_size=int(ev["batch_size"]))
        metrics.update({k: round(v, 5) if isinstance(v, float) else v for k, v in split_metrics.items()})
        write_csv(details.label_bins, out / "plots" / f"reliability_{split}.csv",
                  ["bin_low", "bin_high", "count", "mean_confidence", "accuracy"])
        plot_reliability(details.label_bins, out / "plots" / f"reliability_{split}.png", f"Reliability on {split}")
    return metrics


def train_records(ctx: StageContext) -> list[dict]:
    """The labeled preference pairs of the `prefs` stage (world or real data)."""
    return read_jsonl(ctx.root / "data/prefs/train.jsonl")
