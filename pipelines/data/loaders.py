"""Real preference data (Anthropic HH, UltraFeedback, plain pairs) into the pipeline's common schema.

Every loader returns records {"id", "prompt", "chosen", "rejected", "source"} (plus any extra keys
of `pairs` records), with prompts in the convention of `template.format_prompt`: the text after
"User: ". Multi-turn history stays inside the prompt as "...\\nAssistant: ...\\nUser: ..." lines,
so `format_prompt(prompt)` renders the whole conversation.

What counts as a valid record was decided on real dumps. An empty response (HH transcripts whose
final assistant turn is empty, `"rejected": ""`) is valid data: a labeler preferred one reply over
saying nothing, or the reverse, and the LM data keeps an empty response as a lone eos target. A
record that carries no preference is invalid: no prompt, identical chosen and rejected, missing or
mistyped fields, HH transcripts that differ before their final assistant turn, a duplicate `id`.
By default loading is all-or-nothing: the first invalid record raises `PreferenceDataError` naming
the file, the line (or row) and the field. With `invalid="skip"` invalid records are dropped and
counted per reason (`REASONS`). UltraFeedback's `prompt_id` names a prompt, not a pair, so a second
pair for the same prompt is not a duplicate: it gets the id `<prompt_id>-2`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .jsonl import JsonlError, _NonFinite, iter_jsonl, loads_strict
from .text import TextFileError, decode_utf8

FORMATS = ("hh", "ultrafeedback", "pairs")
_HH_TURN_RE = re.compile(r"\n\n(Human|Assistant):")
_HH_ASSISTANT = "\n\nAssistant:"


class PreferenceDataError(ValueError):
    """A preference record that cannot be converted; the message says where and which field.

    `reason` is the record rule it broke (one of REASONS) or None when the file itself is bad.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


class PreferenceSourceError(OSError):
    """A preference source that cannot be opened at all (missing file, hub download failure)."""


# Why a record is invalid: the keys of `PreferenceLoad.skipped` (and of the prefs stage's
# `skipped/<reason>` metrics) when invalid records are skipped.
REASONS = ("not_an_object", "unknown_format", "missing_field", "wrong_type", "empty_prompt", "identical",
           "unaligned_transcripts", "no_assistant_message", "non_finite_number", "duplicate_id")
INVALID_POLICIES = ("error", "skip")


class _BadField(Exception):
    """Internal: raised by converters, turned into PreferenceDataError with the location added."""

    def __init__(self, field: str, problem: str, reason: str):
        super().__init__(problem)
        self.field, self.problem, self.reason = field, problem, reason


@dataclass
class PreferenceLoad:
    """What a load kept, and how many records it skipped per reason (empty unless invalid="skip")."""

    records: list[dict[str, Any]]
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> the first such error


# ---------------------------------------------------------------- raw rows


def _iter_json_array(path: Path, data: bytes) -> Iterator[tuple[str, Any]]:
    try:
        rows = loads_strict(decode_utf8(data, path))
    except TextFileError as exc:
        raise PreferenceDataError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise PreferenceDataError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    except _NonFinite as exc:
        item = re.match(r"\[(\d+)\]\.?(.*)", exc.where)
        where = f"item {item.group(1)}: field '{item.group(2)}'" if item else f"field '{exc.where}'"
        raise PreferenceDataError(f"{path}: {where}: {exc.text} is not a finite number") from None
    if not isinstance(rows, list):
        raise PreferenceDataError(f"{path}: expected a JSON array of records, got {type(rows).__name__}")
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
    if path.suffix == ".json":
        data = path.read_bytes()
        if data.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
            yield from _iter_json_array(path, data)
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


def _text(row: dict, name: str) -> str:
    if name not in row or row[name] is None:
        raise _BadField(name, "missing field", "missing_field")
    value = row[name]
    if not isinstance(value, str):
        raise _BadField(name, f"expected a string, got {type(value).__name__}", "wrong_type")
    return value


def _finite(value: Any, name: str) -> None:
    """Extra fields are copied into the output, which refuses NaN (pandas writes missing floats as NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _BadField(name, f"{value!r} is not a finite number", "non_finite_number")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{name}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _finite(item, f"{name}[{index}]")


def _last_assistant(value: Any, name: str) -> str:
    """A string response, or the content of the last assistant message in a message list."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _BadField(name, f"expected a string or a list of messages, got {type(value).__name__}", "wrong_type")
    for message in reversed(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise _BadField(name, "messages must be objects with 'role' and 'content'", "wrong_type")
        if message["role"] == "assistant":
            if not isinstance(message["content"], str):
                raise _BadField(name, "assistant message content is not a string", "wrong_type")
            return message["content"]
    raise _BadField(name, "no assistant message in the list", "no_assistant_message")


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
        raise _BadField("chosen", "transcripts share no '\\n\\nAssistant:' turn", "unaligned_transcripts")
    prompt = _hh_turns_to_prompt(chosen[:cut])
    out = {"prompt": prompt}
    for field, transcript in (("chosen", chosen), ("rejected", rejected)):
        reply = transcript[cut + len(_HH_ASSISTANT):]
        if _HH_TURN_RE.search(reply):
            raise _BadField(field, "transcripts diverge before the final assistant turn", "unaligned_transcripts")
        out[field] = reply
    if not prompt.strip():
        raise _BadField("chosen", "no human turn before the final assistant turn", "empty_prompt")
    return out


def _from_ultrafeedback(row: dict) -> dict[str, Any]:
    out = {"prompt": _text(row, "prompt")}
    for name in ("chosen", "rejected"):
        if name not in row or row[name] is None:
            raise _BadField(name, "missing field", "missing_field")
        out[name] = _last_assistant(row[name], name)
    return out


_CORE = ("id", "prompt", "chosen", "rejected", "source")


def _from_pairs(row: dict) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in _CORE}
    for key, value in out.items():
        _finite(value, key)
    out.update({name: _text(row, name) for name in ("prompt", "chosen", "rejected")})
    return out


_CONVERTERS: dict[str, Callable[[dict], dict[str, Any]]] = {
    "hh": _from_hh, "ultrafeedback": _from_ultrafeedback, "pairs": _from_pairs,
}


def _detect_format(row: Any) -> str:
    """Guess the format from one record's keys and value types."""
    if not isinstance(row, dict):
        raise _BadField("(record)", f"expected an object, got {type(row).__name__}", "not_an_object")
    chosen = row.get("chosen")
    if "prompt" in row:
        return "ultrafeedback" if isinstance(chosen, list) else "pairs"
    if isinstance(chosen, str) and ("Human:" in chosen or "Assistant:" in chosen):
        return "hh"
    raise _BadField("prompt", "cannot detect the format: no 'prompt' field and 'chosen' is not an HH transcript",
                    "unknown_format")


def _convert(row: Any, fmt: str, index: int, source_label: str) -> dict[str, Any]:
    """One record in the common schema. Empty responses are kept (see the module docstring)."""
    if not isinstance(row, dict):
        raise _BadField("(record)", f"expected an object, got {type(row).__name__}", "not_an_object")
    out = _CONVERTERS[fmt](row)
    out["prompt"] = out["prompt"].strip()
    if not out["prompt"]:
        raise _BadField("prompt", "empty text", "empty_prompt")
    out["chosen"], out["rejected"] = out["chosen"].strip(), out["rejected"].strip()
    if out["chosen"] == out["rejected"]:
        raise _BadField("rejected", "chosen and rejected are identical", "identical")
    raw_id = row.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise _BadField("id", f"expected a string or an integer, got {type(raw_id).__name__}", "wrong_type")
    out["id"] = str(raw_id) if raw_id not in (None, "") else f"{source_label}-{index:07d}"
    out["source"] = source_label
    return out


def _prompt_ids_as_ids(records: list[dict[str, Any]], rows_prompt_ids: list[Any]) -> None:
    """UltraFeedback's `prompt_id` names a prompt, not a pair: the k-th pair of a prompt gets `<prompt_id>-k`."""
    seen: Counter = Counter()
    for record, prompt_id in zip(records, rows_prompt_ids):
        if prompt_id in (None, ""):
            continue
        seen[str(prompt_id)] += 1
        k = seen[str(prompt_id)]
        record["id"] = str(prompt_id) if k == 1 else f"{prompt_id}-{k}"


# ---------------------------------------------------------------- public API


def read_preferences(source: str, format: str = "auto", split: str = "train", limit: int | None = None,
                     *, invalid: str = "error") -> PreferenceLoad:
    """Load preference pairs from a local .jsonl/.json/.parquet file or `hub:<name>`.

    format: "hh", "ultrafeedback", "pairs" or "auto" (detected from the first record).
    split is used for hub datasets only; limit caps the number of records kept (a hub dataset is
    sliced to its first `limit` rows before any are skipped, so skipping can leave fewer).
    invalid="error" (default): the first record that breaks a rule raises PreferenceDataError
    naming file, line and field, and nothing is returned. invalid="skip": such records are dropped
    and counted per reason in `.skipped`. File-level problems (not UTF-8, invalid JSON, NaN, an
    over-long line, an unreadable parquet file) always raise: they are not records to skip.
    """
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown preference format {format!r}; use 'auto' or one of {FORMATS}")
    if invalid not in INVALID_POLICIES:
        raise ValueError(f"unknown invalid-record policy {invalid!r}; use one of {INVALID_POLICIES}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be null or an integer >= 0, got {limit!r}")
    if source.startswith("hub:"):
        name = source[len("hub:"):]
        where, rows = f"hub:{name}[{split}]", _iter_hub(name, split, limit)
        label = name.replace("/", "_")
    else:
        path = Path(source)
        where, rows, label = str(path), _iter_local(path), path.stem
    fmt = None if format == "auto" else format
    load = PreferenceLoad(records=[])
    prompt_ids: list[Any] = []
    first_seen: dict[str, str] = {}
    for index, (location, row) in enumerate(rows):
        if limit is not None and len(load.records) >= limit:
            break
        try:
            if fmt is None:
                fmt = _detect_format(row)
            record = _convert(row, fmt, index, f"{fmt}:{label}")
            if "id" in row and record["id"] in first_seen:
                raise _BadField("id", f"duplicate id {record['id']!r} (first at {first_seen[record['id']]})",
                                "duplicate_id")
        except _BadField as exc:
            message = f"{where}: {location}: field '{exc.field}': {exc.problem}"
            if invalid == "error":
                raise PreferenceDataError(message, exc.reason) from None
            load.skipped[exc.reason] += 1
            load.first_skipped.setdefault(exc.reason, message)
            continue
        first_seen[record["id"]] = location
        load.records.append(record)
        prompt_ids.append(row.get("prompt_id") if "id" not in row else None)
    _prompt_ids_as_ids(load.records, prompt_ids)
    ids = Counter(record["id"] for record in load.records)
    clash = next((rid for rid, n in ids.items() if n > 1), None)
    if clash is not None:
        raise PreferenceDataError(f"{where}: id {clash!r} is both a record's own id and one derived from another "
                                  "record's position or prompt_id; give every record an 'id'", "duplicate_id")
    return load


def load_preferences(source: str, format: str = "auto", split: str = "train", limit: int | None = None,
                     *, invalid: str = "error") -> list[dict[str, Any]]:
    """The records of `read_preferences` (see there), without the skip counts."""
    return read_preferences(source, format, split, limit, invalid=invalid).records
