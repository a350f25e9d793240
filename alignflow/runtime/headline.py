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
    """The stage's `meta.headline` metrics found in `metrics`, flat (written with sorted keys)."""
    info = _stage_info(root, stage)
    keys = ((info.meta or {}).get("headline") if info is not None else None) or []
    flat = flatten(dict(metrics))
    headline = {}
    for key in (k for k in keys if k in flat):
        value = flat[key]
        if isinstance(value, (list, tuple)):  # DVC shows scalars only: an interval [low, high] as key.0, key.1
            headline.update({f"{key}.{i}": item for i, item in enumerate(value)})
        else:
            headline[key] = value
    return headline
