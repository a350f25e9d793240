"""headline.json: the few metrics of a stage that `dvc exp show`, `dvc metrics show` and `dvc metrics diff` read.

dvc.yaml's top-level `metrics:` lists each stage's headline.json rather than its metrics.json, so those
commands show a few columns per stage instead of hundreds; metrics.json keeps everything
(`dvc metrics show models/<stage>/metrics.json`). The keys are the stage's dvc.yaml `meta.headline`.
Machine facts named in a headline are left out: they are not outputs (identical inputs, identical files).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from alignflow.runtime.fingerprint import _stage_info
from alignflow.runtime.params import flatten


def headline_of(root: Path, stage: str, metrics: Mapping[str, Any]) -> dict:
    """The stage's `meta.headline` metrics found in `metrics`, flat, in the order the headline names them."""
    info = _stage_info(root, stage)
    keys = ((info.meta or {}).get("headline") if info is not None else None) or []
    flat = flatten(dict(metrics))
    return {key: flat[key] for key in keys if key in flat}
