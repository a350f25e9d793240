"""Serving families: how each kind of saved model answers a table of requests, with no MLflow in sight.

A family turns a model folder written by this project's own `save` functions into a predictor
(`predict(rows, params) -> rows`), and declares its request and response columns, an input
example and its inference params. `alignflow/runtime/flavours` wraps a family as an MLflow pyfunc
model; a notebook can use a family directly. Adding a kind of registered model is one module here
with a `register(Family(...))` call, imported at the bottom of this file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence


class Predictor(Protocol):
    def predict(self, rows: Sequence[dict], params: dict) -> list[dict]: ...


@dataclass(frozen=True)
class Column:
    """One request or response column: `type` is "string", "double", "long" or "double_array"."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class Family:
    name: str
    load: Callable[[Path], Predictor]
    inputs: tuple[Column, ...]
    outputs: tuple[Column, ...]
    example: Callable[[Path], list[dict]]  # a small request, built from the model folder if it needs to be
    loading_call: str  # how to load the saved folder with the project's own code ({path} is the folder)
    params: dict[str, Any] = field(default_factory=dict)  # inference params and their defaults
    requirements: tuple[str, ...] = ()  # distributions beyond torch/transformers/safetensors/numpy/pandas


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in _FAMILIES:
        raise ValueError(f"serving family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ValueError(f"unknown serving family {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def names() -> list[str]:
    return sorted(_FAMILIES)


def text(row: dict, key: str, required: bool = True) -> str | None:
    """A string field of a request row; missing, None and NaN (pandas' empty cell) read as absent."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if required:
            raise ValueError(f"request row lacks '{key}'")
        return None
    return str(value)


def checked_params(params: dict | None, defaults: dict) -> dict:
    """Defaults overridden by the request's params; an unknown name is an error, not silently ignored."""
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise ValueError(f"unknown inference params {unknown}; known: {sorted(defaults)}")
    return {**defaults, **(params or {})}


from pipelines.serving import generation, preference, rewards, speech, visual  # noqa: E402,F401 - each registers its family
