"""Where facts about the machine and the moment go: `reports/machine/<stage>/facts.json`, untracked.

Wall times, speeds and thread counts differ between two runs of the same commit; keeping them out of
DVC-tracked outputs keeps those outputs' hashes identical across machines (see alignflow/runtime/stage.py).
"""
from __future__ import annotations

import json
from pathlib import Path


def machine_dir_rel(stage: str) -> str:
    """The untracked per-stage folder of machine facts (see the module docstring), relative to the root."""
    return f"reports/machine/{stage}"


def machine_facts_path(root: Path, stage: str) -> Path:
    return root / machine_dir_rel(stage) / "facts.json"


def read_machine_facts(root: Path, stage: str) -> dict:
    path = machine_facts_path(root, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
