"""The Task record every prompt family produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    """One prompt with its oracle spec, a correct reference and family-specific bad answers.

    `variants` maps an error type (e.g. "wrong_answer") to candidate texts for it; error types
    without an entry are either generic (padding, refusal, off-topic) or not applicable.
    `style_ok` is False where any extra words would break the instruction (format family).
    """

    family: str
    prompt: str
    spec: dict[str, Any]
    reference: str
    variants: dict[str, list[str]] = field(default_factory=dict)
    style_ok: bool = True
