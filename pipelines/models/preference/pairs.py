"""Preference pairs for LRHP, each with its *kind of preference*, read and checked before any use.

Kind of preference (``kind_column``):
- ``"world"``: the simulated world's ``family`` plus the named error type of the rejected response
  (``rejected_error_type``), e.g. ``arithmetic/wrong_answer``: what the label penalises, in which task.
- any other value: that field of each record (real data: a subset name, a source column).
- ``None``: no kind (the CLI embedding a file that has none); each record's ``kind`` is then None.
"""
from __future__ import annotations

import os
from typing import Sequence

from pipelines.data.jsonl import JsonlError, iter_jsonl

WORLD_KINDS = "world"
_TEXT_FIELDS = ("prompt", "chosen", "rejected")


def kind_of(record: dict, kind_column: str) -> str | None:
    """The record's kind, or None when the field(s) it comes from are missing or not strings."""
    if kind_column == WORLD_KINDS:
        family, error = record.get("family"), record.get("rejected_error_type")
        return f"{family}/{error}" if isinstance(family, str) and isinstance(error, str) else None
    value = record.get(kind_column)
    return value if isinstance(value, str) and value else None


def read_pairs(path: str | os.PathLike, kind_column: str | None, need_gold: bool = False) -> list[dict]:
    """Records with a ``kind`` field; a bad record raises ``FILE: line N: problem`` (a ValueError)."""
    out = []
    for line_no, rec in iter_jsonl(path):
        for key in _TEXT_FIELDS:
            if not isinstance(rec.get(key), str):
                raise JsonlError(path, line_no, f"field '{key}' missing or not a string")
        if rec["chosen"] == rec["rejected"]:
            raise JsonlError(path, line_no, "fields 'chosen' and 'rejected' are identical")
        kind = None if kind_column is None else kind_of(rec, kind_column)
        if kind is None and kind_column is not None:
            what = "'family' and 'rejected_error_type'" if kind_column == WORLD_KINDS else f"'{kind_column}'"
            raise JsonlError(path, line_no, f"kind of preference: field {what} missing or not a string "
                                            f"(lrhp.kind_column = {kind_column!r})")
        if need_gold:
            for key in ("gold_chosen", "gold_rejected"):
                if isinstance(rec.get(key), bool) or not isinstance(rec.get(key), (int, float)):
                    raise JsonlError(path, line_no, f"field '{key}' missing or not a number (gold margin needed)")
        out.append({**rec, "kind": kind})
    if not out:
        raise ValueError(f"{path}: no preference pairs")
    return out


def kind_index(kinds: Sequence[str]) -> tuple[list[int], list[str]]:
    """(kind id per item, the sorted kind names): ids are stable for a given set of kinds."""
    names = sorted(set(kinds))
    lookup = {k: i for i, k in enumerate(names)}
    return [lookup[k] for k in kinds], names


def gold_margin(record: dict) -> float:
    """gold(chosen) - gold(rejected): how strongly the labelled choice is right (negative: label flipped)."""
    return float(record["gold_chosen"]) - float(record["gold_rejected"])
