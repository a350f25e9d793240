"""Check a params mapping against the default profile, so a hand edit fails before any stage runs.

`profiles/default.yaml` is the schema: every key it defines must be present (unknown keys are
typos), and each leaf must have the default's type: an int where the default is an int (a bool is
not an int), a number (int or float, finite) where it is a float, a bool, a string, a list whose
items share the default items' type, a mapping checked key by key. A default of null says nothing
about the type, so `NULLABLE` declares what those keys accept (and the few non-null defaults that
may be set to null); an undeclared null default accepts null or any scalar. NaN and infinities
are refused everywhere. Each problem is one line naming the file and the dotted key, e.g.
`params.yaml: prefs.limit: expected int or null, got str '10'`.
"""
from __future__ import annotations

import math
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Mapping

from alignflow.runtime.errors import ParamsError

SCHEMA_FILE = Path("profiles") / "default.yaml"
# Keys params.yaml may hold beyond the default profile's (written by `render_profile`).
EXTRA_TOP_LEVEL = {"profile": ("str",)}
# Keys a params file or profile may set although the default profile leaves them out, because their
# default lives in code and setting it changes no result (`processes: 1` is what every stage runs).
OPTIONAL: dict[str, tuple[str, ...]] = {
    "*.train.processes": ("int",),  # ranks the stage runs on (pipelines/training/config.py)
    "*.optim.processes": ("int",),  # the same in PPO's optimizer block
    "launcher": ("mapping",),  # the multi-machine rendezvous, checked by alignflow/runtime/launch.py
}

# What a key accepts when the default profile cannot say it (a null default), or when a non-null
# default may also be null. Patterns match dotted keys; `*` stands for one or more key segments.
NULLABLE: dict[str, tuple[str, ...]] = {
    "prefs.path": ("str", "null"),           # null when prefs.hub names the data
    "prefs.hub": ("str", "null"),
    "prefs.limit": ("int", "null"),
    "tokenizer.pretrained": ("str", "null"),
    "base_lm.init_from": ("str", "null"),
    "lrhp.backbone": ("str", "null"),        # null: the base LM
    "*.deepspeed": ("mapping", "null"),      # a DeepSpeed config block, checked where it is built
    "*.time_budget_s": ("number", "null"),   # seconds; null: no budget
    "rm_compare.extra_eval.source": ("str", "null"),
    "rm_compare.extra_eval.limit": ("int", "null"),
    "lisa.rank": ("int", "null"),
    "speech.mustc_root": ("str", "null"),
    "st.compare.n_utterances": ("int", "null"),
    "visual.real.pool": ("str", "null"),
    "visual.real.test": ("str", "null"),
    "visual.real.image_root": ("str", "null"),
    "visual.policy.init": ("str", "null"),
}

_KIND_NAMES = {"int": "int", "number": "number", "bool": "bool", "str": "str", "mapping": "mapping",
               "list": "list", "null": "null", "scalar": "a scalar"}


# bool before int: bool subclasses int, and a flag is not a count
_KINDS = ((bool, "bool"), (int, "int"), (float, "number"), (str, "str"), (Mapping, "mapping"), (list, "list"))


def kind_of(value: Any) -> str:
    """The schema kind of a YAML value (null, bool, int, number, str, mapping, list)."""
    if value is None:
        return "null"
    return next((kind for cls, kind in _KINDS if isinstance(value, cls)), type(value).__name__)


def _accepts(kinds: tuple[str, ...], value: Any) -> bool:
    kind = kind_of(value)
    if kind in kinds:
        return True
    if kind == "int" and "number" in kinds:
        return True
    return "scalar" in kinds and kind in ("bool", "int", "number", "str")


def _describe(value: Any) -> str:
    kind = kind_of(value)
    if kind in ("mapping", "list", "null"):
        return kind
    if kind == "number":
        return f"float {value!r}"
    return f"{type(value).__name__} {value!r}"


def optional_kinds(dotted: str) -> tuple[str, ...] | None:
    """What an optional key (see `OPTIONAL`) accepts, or None when `dotted` is not optional."""
    return next((kinds for pattern, kinds in OPTIONAL.items() if fnmatchcase(dotted, pattern)), None)


def _declared(dotted: str) -> tuple[str, ...] | None:
    for pattern, kinds in NULLABLE.items():
        if fnmatchcase(dotted, pattern):
            return kinds
    return None


def _expected(default: Any, dotted: str) -> tuple[str, ...]:
    declared = _declared(dotted)
    if declared is not None:
        return declared
    kind = kind_of(default)
    if kind == "null":
        return ("null", "scalar")
    return (kind,)


def _fail(source: str, dotted: str, kinds: tuple[str, ...], value: Any) -> ParamsError:
    wanted = " or ".join(_KIND_NAMES.get(k, k) for k in kinds)
    return ParamsError(f"{source}: {dotted}: expected {wanted}, got {_describe(value)}")


def _check_finite(source: str, dotted: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{source}: {dotted}: expected a finite number, got {value!r}")


def _item_kinds(default: list) -> tuple[str, ...] | None:
    """The kind every item of a list must have, from the default's items (None: not checked)."""
    kinds = {kind_of(item) for item in default}
    if kinds == {"int"}:
        return ("int",)
    if kinds and kinds <= {"int", "number"}:
        return ("number",)
    if len(kinds) == 1 and kinds <= {"str", "bool"}:
        return tuple(kinds)
    return None


def _check_value(default: Any, value: Any, source: str, dotted: str, partial: bool) -> None:
    kinds = _expected(default, dotted)
    if not _accepts(kinds, value):
        raise _fail(source, dotted, kinds, value)
    _check_finite(source, dotted, value)
    if isinstance(value, Mapping) and isinstance(default, Mapping):
        _check_mapping(default, value, source, f"{dotted}.", partial)
    elif isinstance(value, Mapping):  # a free-form block (a DeepSpeed config): only numbers checked
        for key, item in value.items():
            _check_free(item, source, f"{dotted}.{key}")
    elif isinstance(value, list):
        items = _item_kinds(default) if isinstance(default, list) else None
        for index, item in enumerate(value):
            where = f"{dotted}[{index}]"
            if items is not None and not _accepts(items, item):
                raise _fail(source, where, items, item)
            _check_free(item, source, where)


def _check_free(value: Any, source: str, dotted: str) -> None:
    """No schema below this point: refuse NaN and infinities only."""
    _check_finite(source, dotted, value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_free(item, source, f"{dotted}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_free(item, source, f"{dotted}[{index}]")


def _check_mapping(schema: Mapping, params: Mapping, source: str, prefix: str, partial: bool) -> None:
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ParamsError(f"{source}: {dotted}: keys must be strings, got {type(key).__name__}")
        if key not in schema:
            extra = (EXTRA_TOP_LEVEL.get(key) if not prefix else None) or optional_kinds(dotted)
            if extra is not None:
                if not _accepts(extra, value):
                    raise _fail(source, dotted, extra, value)
                _check_free(value, source, dotted)
                continue
            raise ParamsError(f"{source}: unknown key '{dotted}' (not in {SCHEMA_FILE.as_posix()})")
        _check_value(schema[key], value, source, dotted, partial)
    if not partial:
        missing = [f"{prefix}{key}" for key in schema if key not in params]
        if missing:
            raise ParamsError(f"{source}: missing key(s) {', '.join(repr(k) for k in missing)} "
                              f"(every key of {SCHEMA_FILE.as_posix()} must be set)")


def default_schema(root: Path | None = None) -> dict:
    """The default profile of the project at `root` (default: the project this package lives in)."""
    from alignflow.runtime.params import read_yaml

    base = root if root is not None else Path(__file__).resolve().parents[2]
    return read_yaml(base / SCHEMA_FILE)


def check_params(params: Mapping[str, Any], source: str, *, schema: Mapping[str, Any] | None = None,
                 root: Path | None = None, partial: bool = False) -> None:
    """Raise ParamsError (one line: file, dotted key, expected vs got) unless `params` fits the schema.

    `schema` defaults to profiles/default.yaml of `root` (or of this project). `partial=True`
    checks an overlay: only the keys it sets, none required.
    """
    if not isinstance(params, Mapping):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(params).__name__}")
    if schema is None:
        schema = default_schema(root)
    _check_mapping(schema, params, source, "", partial)
