"""Per-family content scores in [0, 1], computed from the spec and the response text alone."""

from __future__ import annotations

import re
from typing import Any, Callable

from .text import count_words, integers, parse_json_object, words
from .vocab import CATEGORIES

_CATEGORY_WORDS = {name: {w.lower() for w in pool} for name, pool in CATEGORIES.items()}
_COMMA_LIST_RE = re.compile(r"\s*[A-Za-z]+(?:\s*,\s*[A-Za-z]+)+\s*\.?\s*")


def _final_number(spec: dict[str, Any], text: str) -> float:
    """1 if the last number is the answer, 0.4 if the answer appears but is not the final claim."""
    found = integers(text)
    if not found:
        return 0.0
    if found[-1] == spec["answer"]:
        return 1.0
    return 0.4 if spec["answer"] in found else 0.0


def grade_arithmetic(spec: dict[str, Any], text: str) -> float:
    """Final number correct -> 1; stopped after the first step of a two-step problem -> 0.4."""
    found = integers(text)
    if found and found[-1] == spec["answer"]:
        return 1.0
    if spec.get("intermediate") is not None and spec["intermediate"] in found:
        return 0.4
    return 0.0


def grade_list_ops(spec: dict[str, Any], text: str) -> float:
    """List answers must end the reply in order; a correct but incomplete prefix earns 0.5."""
    if spec["op"] in ("max", "min"):
        return _final_number(spec, text)
    answer, found = list(spec["answer"]), integers(text)
    if found[-len(answer):] == answer:
        return 1.0
    return 0.5 if found and len(found) < len(answer) and found == answer[: len(found)] else 0.0


def grade_unit_convert(spec: dict[str, Any], text: str) -> float:
    """Right number with the target unit -> 1, right number without it -> 0.6."""
    found = integers(text)
    if not found or found[-1] != spec["answer"]:
        return 0.0
    return 1.0 if spec["unit"] in words(text) else 0.6


def grade_context_qa(spec: dict[str, Any], text: str) -> float:
    """The answer word alone -> 1; the answer hedged with another word of its category -> 0.4."""
    mentioned = set(words(text)) & _CATEGORY_WORDS[spec["category"]]
    if spec["answer"] not in mentioned:
        return 0.0
    return 1.0 if mentioned == {spec["answer"]} else 0.4


def _coverage(keys: list[str], tokens: set[str]) -> float:
    return sum(k in tokens for k in keys) / len(keys) if keys else 0.0


def grade_summary(spec: dict[str, Any], text: str) -> float:
    """Share of the key sentence's content words, minus a little for copying filler detail."""
    tokens = set(words(text))
    score = _coverage(spec["key_words"], tokens) - 0.3 * _coverage(spec["filler_words"], tokens)
    return min(1.0, max(0.0, score))


def grade_comply(spec: dict[str, Any], text: str) -> float:
    """Share of the answer's keywords present."""
    return _coverage(spec["key_words"], set(words(text)))


def format_scores(spec: dict[str, Any], text: str) -> tuple[float, float]:
    """(content, constraint) for the format family, each 0 or 1."""
    kind, tokens = spec["constraint"], words(text)
    if kind in ("uppercase", "lowercase"):
        content = tokens == spec["target"].split()
        letters = [c for c in text if c.isalpha()]
        wrong_case = str.islower if kind == "uppercase" else str.isupper
        constraint = bool(letters) and not any(wrong_case(c) for c in letters)
    elif kind == "exact_words":
        pool = _CATEGORY_WORDS[spec["category"]]
        content = bool(tokens) and all(t in pool for t in tokens) and len(set(tokens)) == len(tokens)
        constraint = count_words(text) == spec["n"]
    elif kind == "comma_list":
        pool = _CATEGORY_WORDS[spec["category"]]
        items = [t for t in tokens if t != "and"]
        content = len(items) == spec["n"] and len(set(items)) == len(items) and all(t in pool for t in items)
        constraint = bool(_COMMA_LIST_RE.fullmatch(text)) and text.count(",") == spec["n"] - 1
    elif kind == "json":
        obj = parse_json_object(text)
        constraint = obj is not None and "answer" in obj
        if constraint:
            value = obj["answer"]
            content = (isinstance(value, int) and not isinstance(value, bool) and value == spec["value"]) or (
                isinstance(value, str) and value.strip() == str(spec["value"]))
        else:
            found = integers(text)
            content = bool(found) and found[-1] == spec["value"]
    else:
        raise ValueError(f"unknown format constraint {kind!r}")
    return float(content), float(constraint)


def grade_format(spec: dict[str, Any], text: str) -> float:
    """0.6 for the right content plus 0.4 for obeying the output constraint."""
    content, constraint = format_scores(spec, text)
    return 0.6 * content + 0.4 * constraint


GRADERS: dict[str, Callable[[dict[str, Any], str], float]] = {
    "arithmetic": grade_arithmetic,
    "list_ops": grade_list_ops,
    "counting": _final_number,
    "unit_convert": grade_unit_convert,
    "context_qa": grade_context_qa,
    "summary": grade_summary,
    "comply": grade_comply,
    "format": grade_format,
}
