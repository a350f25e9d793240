"""One check the visual world's readers share: a mapping with the keys it must have."""
from __future__ import annotations

from typing import Any, Iterable


def require_keys(value: Any, keys: Iterable[str], where: str) -> dict:
    """`value` itself when it is a dict holding every key; else ValueError naming `where` and the first missing key."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a dict, got {type(value).__name__}")
    missing = next((k for k in keys if k not in value), None)
    if missing is not None:
        raise ValueError(f"{where} is missing key {missing!r}")
    return value
