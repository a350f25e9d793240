"""Robust text parsers shared by the oracle: they accept any string, including empty or garbage text."""

from __future__ import annotations

import json
import re

from .vocab import HEDGES, POLITE_PREAMBLES

_WORD_RE = re.compile(r"[A-Za-z']+")
_INT_RE = re.compile(r"(?<![\w.])-?\d+")
_REFUSAL_RE = re.compile(
    r"\b(?:i\s*(?:can't|cannot|can not|won't|will not|am not able to|'m not able to)\s+"
    r"(?:help|assist|give|provide|do that|support)"
    r"|i must decline|i refuse to|sorry,? but i)",
    re.IGNORECASE,
)
_POLITE_RE = re.compile(
    r"^\s*(?:" + "|".join(re.escape(p.rstrip("!.").lower()) for p in POLITE_PREAMBLES) + r")\b",
    re.IGNORECASE,
)
_HEDGE_RE = re.compile(
    r"\b(?:might be wrong|not (?:fully|completely|totally) sure|double check|i think|probably)\b",
    re.IGNORECASE,
)


def count_words(text: str) -> int:
    """Whitespace word count, the unit of every word limit."""
    return len(text.split())


def words(text: str) -> list[str]:
    """Lower-cased alphabetic tokens; possessive 's is dropped so "Mia's" -> "mia"."""
    out = []
    for token in _WORD_RE.findall(text.lower()):
        token = token.strip("'")
        if token.endswith("'s"):
            token = token[:-2]
        if token:
            out.append(token)
    return out


def integers(text: str) -> list[int]:
    """All integers written in digits, in order of appearance (huge digit runs are ignored)."""
    out = []
    for match in _INT_RE.findall(text):
        if len(match.lstrip("-")) <= 12:
            out.append(int(match))
    return out


def is_refusal(text: str) -> bool:
    """Whether the text declines the request."""
    return bool(_REFUSAL_RE.search(text))


def has_polite_preamble(text: str) -> bool:
    """Whether the reply opens with one of the polite preamble phrases."""
    return bool(_POLITE_RE.match(text))


def has_hedge(text: str) -> bool:
    """Whether the reply hedges its answer."""
    return bool(_HEDGE_RE.search(text))


def parse_json_object(text: str) -> dict | None:
    """The reply parsed as a JSON object, or None if the whole reply is not one."""
    try:
        value = json.loads(text.strip())
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
