"""Real preference data (Anthropic HH, UltraFeedback, plain pairs) into the pipeline's common schema.

Every loader returns records {"id", "prompt", "chosen", "rejected", "source"} (plus any extra keys
of `pairs` records), with prompts in the convention of `template.format_prompt`: the text after
"User: ". Multi-turn history stays inside the prompt as "...\\nAssistant: ...\\nUser: ..." lines,
so `format_prompt(prompt)` renders the whole conversation. Loading is all-or-nothing: one bad
record raises `PreferenceDataError` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from .jsonl import JsonlError, iter_jsonl

FORMATS = ("hh", "ultrafeedback", "pairs")
_HH_TURN_RE = re.compile(r"\n\n(Human|Assistant):")
_HH_ASSISTANT = "\n\nAssistant:"


class PreferenceDataError(ValueError):
    """A preference record that cannot be converted; the message says where and which field."""


class PreferenceSourceError(OSError):
    """A preference source that cannot be opened at all (missing file, hub download failure)."""


class _BadField(Exception):
    """Internal: raised by converters, turned into PreferenceDataError with the location added."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field, self.problem = field, problem


# ---------------------------------------------------------------- raw rows


def _iter_json_array(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PreferenceDataError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    for index, row in enumerate(rows):
        yield f"item {index}", row


def _iter_local(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, row) pairs of a local file; location reads 'line N' (1-based) or 'row N' (parquet)."""
    if not path.is_file():
        raise PreferenceSourceError(f"preference file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise PreferenceDataError(f"{path}: unreadable parquet file ({exc})") from exc
        for index, row in enumerate(rows):
            yield f"row {index}", row
        return
    if path.suffix not in (".jsonl", ".json"):
        raise PreferenceSourceError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl, .json, .parquet)")
    with open(path, encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    if path.suffix == ".json" and head.startswith("["):
        yield from _iter_json_array(path)
        return
    try:
        for line_no, row in iter_jsonl(path):
            yield f"line {line_no}", row
    except JsonlError as exc:
        raise PreferenceDataError(str(exc)) from exc


def _iter_hub(name: str, split: str, limit: int | None) -> Iterator[tuple[str, Any]]:
    try:
        import datasets

        spec = f"{split}[:{limit}]" if limit is not None else split
        dataset = datasets.load_dataset(name, split=spec)
    except Exception as exc:  # network, auth and missing-dataset errors all surface here
        raise PreferenceSourceError(
            f"could not load hub dataset {name!r} (split {split!r}): {type(exc).__name__}: {exc}. "
            "Check the name and network access, or download it and pass a local file.") from exc
    for index, row in enumerate(dataset):
        yield f"row {index}", row


# ---------------------------------------------------------------- field helpers


def _text(row: dict, field: str) -> str:
    if field not in row or row[field] is None:
        raise _BadField(field, "missing field")
    value = row[field]
    if not isinstance(value, str):
        raise _BadField(field, f"expected a string, got {type(value).__name__}")
    return value


def _nonempty(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise _BadField(field, "empty text")
    return value


def _last_assistant(value: Any, field: str) -> str:
    """A string response, or the content of the last assistant message in a message list."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _BadField(field, f"expected a string or a list of messages, got {type(value).__name__}")
    for message in reversed(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise _BadField(field, "messages must be objects with 'role' and 'content'")
        if message["role"] == "assistant":
            if not isinstance(message["content"], str):
                raise _BadField(field, "assistant message content is not a string")
            return message["content"]
    raise _BadField(field, "no assistant message in the list")


# ---------------------------------------------------------------- format converters


def _hh_turns_to_prompt(transcript: str) -> str:
    """'\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c' -> 'a\\nAssistant: b\\nUser: c'."""
    parts = _HH_TURN_RE.split(transcript)
    lines = [parts[0].strip()] if parts[0].strip() else []
    for role, text in zip(parts[1::2], parts[2::2]):
        text = text.strip()
        if not lines:
            lines.append(text if role == "Human" else f"Assistant: {text}")
        else:
            lines.append(f"{'User' if role == 'Human' else 'Assistant'}: {text}")
    return "\n".join(lines)


def _from_hh(row: dict) -> dict[str, Any]:
    chosen, rejected = _text(row, "chosen"), _text(row, "rejected")
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(_HH_ASSISTANT)
    if cut < 0:
        raise _BadField("chosen", "transcripts share no '\\n\\nAssistant:' turn")
    prompt = _hh_turns_to_prompt(chosen[:cut])
    out = {"prompt": prompt}
    for field, transcript in (("chosen", chosen), ("rejected", rejected)):
        reply = transcript[cut + len(_HH_ASSISTANT):]
        if _HH_TURN_RE.search(reply):
            raise _BadField(field, "transcripts diverge before the final assistant turn")
        out[field] = reply
    if not prompt.strip():
        raise _BadField("chosen", "no human turn before the final assistant turn")
    return out


def _from_ultrafeedback(row: dict) -> dict[str, Any]:
    out = {"prompt": _text(row, "prompt")}
    for field in ("chosen", "rejected"):
        if field not in row or row[field] is None:
            raise _BadField(field, "missing field")
        out[field] = _last_assistant(row[field], field)
    return out


_CORE = ("id", "prompt", "chosen", "rejected", "source")


def _from_pairs(row: dict) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in _CORE}
    out.update({field: _text(row, field) for field in ("prompt", "chosen", "rejected")})
    return out


_CONVERTERS: dict[str, Callable[[dict], dict[str, Any]]] = {
    "hh": _from_hh, "ultrafeedback": _from_ultrafeedback, "pairs": _from_pairs,
}


def _detect_format(row: Any) -> str:
    """Guess the format from one record's keys and value types."""
    if not isinstance(row, dict):
        raise _BadField("(record)", f"expected an object, got {type(row).__name__}")
    chosen = row.get("chosen")
    if "prompt" in row:
        return "ultrafeedback" if isinstance(chosen, list) else "pairs"
    if isinstance(chosen, str) and ("Human:" in chosen or "Assistant:" in chosen):
        return "hh"
    raise _BadField("prompt", "cannot detect the format: no 'prompt' field and 'chosen' is not an HH transcript")


def _convert(row: Any, fmt: str, index: int, source_label: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise _BadField("(record)", f"expected an object, got {type(row).__name__}")
    out = _CONVERTERS[fmt](row)
    for field in ("prompt", "chosen", "rejected"):
        out[field] = _nonempty(out[field], field)
    if out["chosen"] == out["rejected"]:
        raise _BadField("rejected", "chosen and rejected are identical")
    raw_id = row.get("id", row.get("prompt_id"))
    out["id"] = str(raw_id) if raw_id not in (None, "") else f"{source_label}-{index:07d}"
    out["source"] = source_label
    return out


# ---------------------------------------------------------------- public API


def load_preferences(source: str, format: str = "auto", split: str = "train", limit: int | None = None,
                     *, skip_invalid: bool = False) -> list[dict[str, Any]]:
    """Load preference pairs from a local .jsonl/.json/.parquet file or `hub:<name>`.

    format: "hh", "ultrafeedback", "pairs" or "auto" (detected from the first record).
    split is used for hub datasets only; limit caps the number of records read.
    By default a bad record raises PreferenceDataError and nothing is returned; with
    skip_invalid=True bad records are dropped instead (real dumps contain a few).
    """
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown preference format {format!r}; use 'auto' or one of {FORMATS}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if source.startswith("hub:"):
        name = source[len("hub:"):]
        where, rows = f"hub:{name}[{split}]", _iter_hub(name, split, limit)
        label = name.replace("/", "_")
    else:
        path = Path(source)
        where, rows, label = str(path), _iter_local(path), path.stem
    fmt = None if format == "auto" else format
    records: list[dict[str, Any]] = []
    for index, (location, row) in enumerate(rows):
        if limit is not None and len(records) >= limit:
            break
        try:
            if fmt is None:
                fmt = _detect_format(row)
            records.append(_convert(row, fmt, index, f"{fmt}:{label}"))
        except _BadField as exc:
            if skip_invalid:
                continue
            raise PreferenceDataError(f"{where}: {location}: field '{exc.field}': {exc.problem}") from None
    return records
