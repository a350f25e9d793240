"""JSON-lines reading and atomic writing shared by every data stage.

Writes go through `pipelines/atomic.py` (a temp file in the target directory moved into place with
`os.replace`), so a crashed or interrupted stage never leaves a half-written file that a later stage would trust.
Read errors name the file and the 1-based line so bad data can be fixed at the source. Reading is
strict (pipelines/data/text.py): UTF-8 only (a byte-order mark is dropped), lines of at most
`MAX_LINE_BYTES`, and no NaN or infinite numbers (`NaN`, `Infinity` and overflowing literals such as
`1e999` are not JSON, and every writer here refuses them), each error naming file, line and field.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from pipelines.atomic import write_text_atomic

from .text import MAX_LINE_BYTES, TextFileError, iter_lines

__all__ = ["JsonlError", "MAX_LINE_BYTES", "dumps_records", "iter_jsonl", "loads_strict", "read_jsonl",
           "write_jsonl_atomic"]


class JsonlError(TextFileError):
    """A JSON-lines file that cannot be parsed; carries the file and 1-based line number."""


class _NonFinite(ValueError):
    """Internal: a NaN or infinite number inside a JSON document; `where` is its dotted field."""

    def __init__(self, where: str, text: str):
        super().__init__(where)
        self.where, self.text = where, text


def _first_non_finite(value: Any, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(value)"
    if isinstance(value, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for path, item in items:
        found = _first_non_finite(item, path)
        if found is not None:
            return found
    return None


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses NaN, Infinity and overflowing numbers (raises _NonFinite naming the field)."""
    seen: list[str] = []

    def constant(name: str) -> float:
        seen.append(name)
        return float(name.replace("Infinity", "inf"))

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            seen.append(literal)
        return value

    value = json.loads(text, parse_constant=constant, parse_float=number)
    if seen:
        raise _NonFinite(_first_non_finite(value) or "(value)", seen[0])
    return value


def dumps_records(records: Iterable[dict[str, Any]]) -> str:
    """Serialise all records up front so nothing is written unless every one is valid JSON."""
    lines = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(f"record {index} is {type(record).__name__}, expected dict")
        try:
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record {index} is not JSON-serialisable: {exc}") from exc
    return "".join(line + "\n" for line in lines)


def write_jsonl_atomic(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Validate and write records as JSON lines atomically; returns the written path."""
    return write_text_atomic(path, dumps_records(records))


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, record) pairs, skipping blank lines; raise JsonlError on bad lines."""
    try:
        for line_no, line in iter_lines(path):
            if not line.strip():
                continue
            try:
                record = loads_strict(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(path, line_no, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
            except _NonFinite as exc:
                raise JsonlError(path, line_no, f"field '{exc.where}': {exc.text} is not a finite number") from None
            if not isinstance(record, dict):
                raise JsonlError(path, line_no, f"expected a JSON object, got {type(record).__name__}")
            yield line_no, record
    except TextFileError as exc:
        if isinstance(exc, JsonlError):
            raise
        raise JsonlError(exc.path, exc.line, exc.problem) from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a whole JSON-lines file into a list of dicts."""
    return [record for _, record in iter_jsonl(path)]
