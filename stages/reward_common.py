"""What the reward-model stages share: the evaluation splits, how a model is scored on them, named model folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from alignflow.runtime.stage import StageContext
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import evaluate_pairs, plot_reliability

# Every reward model is measured on the same three splits, passed as `--test-id PATH --test-ood PATH --adapt-test PATH`.
EVAL_SPLITS = ("test_id", "test_ood", "adapt_test")


def relative(ctx: StageContext, path: Path) -> str:
    """A workspace path as dvc.yaml writes it (what metrics and gates record)."""
    return path.relative_to(ctx.root).as_posix()


def evaluate_reward_model(ctx: StageContext, scorer, out: Path, ev: dict) -> dict:
    """Harness metrics on every evaluation split, with reliability plots under out/plots."""
    metrics: dict = {}
    for split in EVAL_SPLITS:
        records = read_jsonl(ctx.input(split))[: int(ev["n_pairs"])]
        split_metrics, details = evaluate_pairs(scorer, records, split, seed=ctx.seed,
                                                n_bootstrap=int(ev["bootstrap"]), batch_size=int(ev["batch_size"]))
        metrics.update({k: round(v, 5) if isinstance(v, float) else v for k, v in split_metrics.items()})
        write_csv(details.label_bins, out / "plots" / f"reliability_{split}.csv",
                  ["bin_low", "bin_high", "count", "mean_confidence", "accuracy"])
        plot_reliability(details.label_bins, out / "plots" / f"reliability_{split}.png", f"Reliability on {split}")
    return metrics


def add_named_paths(parser: argparse.ArgumentParser, option: str, what: str) -> None:
    """`--OPTION NAME=PATH [NAME=PATH ...]`: model folders under the names profiles use (dvc.yaml passes them)."""
    parser.add_argument(f"--{option}", dest=option.replace("-", "_"), nargs="+", default=[], metavar="NAME=PATH",
                        help=f"{what}, relative to the repository root (from dvc.yaml)")


def listed_model_metrics(ctx: StageContext, block: str) -> tuple[dict[str, str], dict[str, dict]]:
    """(name -> label, name -> its metrics.json) of the models params `<block>.models` lists, read from
    `--metrics NAME=PATH`; a listed name that dvc.yaml gives no path for is a params error naming the key."""
    import json

    from alignflow.runtime.errors import ParamsError

    listed = ctx.block(block)["models"]
    metric_files = named_paths(ctx, "metrics")
    missing = [m["name"] for m in listed if m["name"] not in metric_files]
    if missing:
        raise ParamsError(f"params.yaml: {block}.models names {', '.join(missing)}, "
                          f"but dvc.yaml passes no --metrics NAME=PATH for it")
    labels = {m["name"]: m["label"] for m in listed}
    return labels, {name: json.loads(metric_files[name].read_text()) for name in labels}


def named_paths(ctx: StageContext, option: str) -> dict[str, Path]:
    """name -> absolute path from `--OPTION NAME=PATH ...`; a malformed pair or missing path is bad input."""
    found: dict[str, Path] = {}
    for pair in getattr(ctx.args, option.replace("-", "_")):
        name, sep, rel = pair.partition("=")
        if not sep or not name or not rel:
            raise ValueError(f"stage '{ctx.name}': --{option} expects NAME=PATH, got {pair!r}")
        path = (ctx.root / rel).resolve()
        if not path.exists():
            raise FileNotFoundError(f"stage '{ctx.name}': --{option} {pair} does not exist "
                                    f"(run the stage that writes it first)")
        found[name] = path
    return found
