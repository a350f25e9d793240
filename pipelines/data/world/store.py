"""Writing a built world to disk: validate every split first, then write each one atomically."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.atomic import write_text_atomic

from ..jsonl import dumps_records
from .schema import validate_splits


def write_world(splits: dict[str, list[dict]], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write `<split>.jsonl` for every split; nothing is written unless all splits are valid."""
    validate_splits(splits)
    payloads = {name: dumps_records(records) for name, records in splits.items()}
    return {name: write_text_atomic(Path(out_dir) / f"{name}.jsonl", text) for name, text in payloads.items()}
