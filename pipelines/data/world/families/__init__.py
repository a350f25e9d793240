"""Registry of prompt families: name -> generator `make(rng) -> Task`."""

from __future__ import annotations

import random
from typing import Callable

from .base import Task
from .language import make_context_qa, make_format, make_summary
from .reasoning import make_arithmetic, make_counting, make_list_ops, make_unit_convert
from .safety import make_comply, make_refuse

FAMILIES: dict[str, Callable[[random.Random], Task]] = {
    "arithmetic": make_arithmetic,
    "list_ops": make_list_ops,
    "context_qa": make_context_qa,
    "format": make_format,
    "summary": make_summary,
    "refuse": make_refuse,
    "comply": make_comply,
    "counting": make_counting,
    "unit_convert": make_unit_convert,
}


def make_task(family: str, rng: random.Random) -> Task:
    """Draw one task of the named family."""
    try:
        maker = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown prompt family {family!r}; known: {sorted(FAMILIES)}") from None
    return maker(rng)


__all__ = ["FAMILIES", "Task", "make_task"]
