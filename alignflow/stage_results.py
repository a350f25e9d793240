"""Reading what a finished stage left behind: its metrics files and its lock entry."""
from __future__ import annotations

import json
from pathlib import Path

from alignflow.runtime.params import flatten
from alignflow.runtime.stage_graph import StageInfo, read_lock


def stage_metrics(root: Path, info: StageInfo) -> dict:
    """The flattened metrics.json of each of the stage's output folders."""
    metrics: dict = {}
    for out in info.outs:
        path = root / out / "metrics.json"
        if path.is_file():
            metrics.update(flatten(json.loads(path.read_text(encoding="utf-8"))))
    return metrics


def headline(root: Path, info: StageInfo) -> dict:
    """The few metrics a stage names in `meta.headline` (all numeric ones if it names none).

    Machine facts (wall times, speed-ups) live outside the tracked outputs, in the stage's
    untracked `reports/machine/<stage>.json`; a headline may name them all the same.
    """
    from alignflow.runtime.machine import read_machine_facts

    metrics = {**flatten(read_machine_facts(root, info.name)), **stage_metrics(root, info)}
    keys = (info.meta or {}).get("headline")
    if keys:
        return {k: metrics[k] for k in keys if k in metrics}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def lineage_tags(root: Path, stage: str) -> dict[str, str]:
    """MLflow tags naming the DVC md5 of every input and output of the stage's last recorded run."""
    entry = read_lock(root).get(stage, {})
    tags = {}
    for dep in entry.get("deps", []):
        tags[f"dvc.dep.{dep['path']}"] = str(dep.get("md5", ""))
    for out in entry.get("outs", []):
        tags[f"dvc.out.{out['path']}"] = str(out.get("md5", ""))
    return tags
