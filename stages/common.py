"""Small pieces the model-training stages share: reading corpora, checkpoint keys, curve outputs."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.flavours import log_stage_model
from alignflow.runtime.stage import StageContext
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import plot_training, write_csv
from pipelines.training.config import TrainConfig, config_from_block
from pipelines.training.distributed import ranks


def train_config(ctx: StageContext, block: dict, key: str) -> TrainConfig:
    """The stage's `train` block as a TrainConfig, seeded from the global seed."""
    if "train" not in block:
        raise ParamsError(f"params.yaml: {key}: missing 'train' block")
    return config_from_block(block["train"], ctx.seed, f"{key}.train")


def checkpoint_key(*parts: object) -> str:
    """A folder name that changes whenever params or inputs change, so resume never mixes runs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def drop_checkpoint(folder: Path | str) -> None:
    """Remove a finished run's resumable checkpoint folder: on the main rank only, which writes it
    (another rank removing it could cut rank 0's last save short, or lose the resume point of a
    stage that fails after training)."""
    if ranks().is_main:
        shutil.rmtree(folder, ignore_errors=True)


def texts(path: Path) -> list[str]:
    return [row["text"] for row in read_jsonl(path)]


def write_curves(out: Path, history: list[dict], title: str, eval_key: str) -> None:
    """plots/train_curve.csv for `dvc plots` and a PNG for people (the loop logs `train_loss`; plotted as `loss`)."""
    history = [{**r, "loss": r["train_loss"]} if "train_loss" in r and "loss" not in r else r for r in history]
    rows = [r for r in history if "loss" in r or eval_key in r]
    write_csv(rows, out / "plots" / "train_curve.csv", ["step", "loss", "lr", eval_key])
    plot_training(history, out / "plots" / "train_curve.png", title, eval_key=eval_key)


def finish_trained_model(ctx: StageContext, out: Path, final_dir: Path, history: list[dict], title: str,
                         eval_key: str, metrics: dict) -> None:
    """The common end of a model-training stage: curves, MLflow history, metrics.json, model + plots artifacts.

    `out` is the staging folder being written, `final_dir` where it lands (`ctx.output_path(key)`).
    """
    write_curves(out, history, title, eval_key)
    ctx.log_history(history, "train")
    ctx.write_metrics(out, metrics)
    log_stage_model(ctx, out / "model", Path(final_dir) / "model")  # an MLflow model when it is published
    ctx.log_artifacts_on_success(Path(final_dir) / "plots", "plots")
