"""JSON-lines reading and atomic writing shared by every data stage.

Writes go to a temp file in the target directory and are moved into place with `os.replace`, so
a crashed or interrupted stage never leaves a half-written file that a later stage would trust.
Read errors name the file and the 1-based line so bad data can be fixed at the source.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


class JsonlError(ValueError):
    """A JSON-lines file that cannot be parsed; carries the file and 1-based line number."""

    def __init__(self, path: str | os.PathLike, line: int, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}: line {line}: {problem}")


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


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write bytes so readers see either the old file or the complete new one, never a mix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return target


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """UTF-8 text through `write_bytes_atomic`."""
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_jsonl_atomic(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Validate and write records as JSON lines atomically; returns the written path."""
    return write_text_atomic(dumps_records(records), path)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, record) pairs, skipping blank lines; raise JsonlError on bad lines."""
    with open(path, "r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(path, line_no, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise JsonlError(path, line_no, f"expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a whole JSON-lines file into a list of dicts."""
    return [record for _, record in iter_jsonl(path)]
