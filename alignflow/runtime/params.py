"""Profiles and params: `profiles/default.yaml` holds every knob; other profiles overlay it.

DVC reads `params.yaml`, so a profile is *rendered* into it (`alignflow run --profile P`).
Running without `--profile` uses params.yaml as it stands, so hand edits and `dvc exp run -S`
work as DVC users expect. Overlays may only change keys the default profile defines, so a typo in a
profile is an error rather than a silently ignored knob.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipelines.atomic import write_text_atomic
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.param_schema import check_params, optional_kinds
from pipelines.data.text import TextFileError, read_text

BASE_PROFILE = "default"
HEADER = (
    "# Rendered by `alignflow run --profile {profile}` from profiles/{sources}.\n"
    "# DVC tracks these values; edit here for a one-off change, or in profiles/ to keep it.\n"
)


def profiles_dir(root: Path) -> Path:
    return root / "profiles"


def available_profiles(root: Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir(root).glob("*.yaml"))


# libyaml when PyYAML has it (its wheels do): the same safe loading, several times faster on params.yaml,
# which every stage and every `alignflow` command reads
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        data = yaml.load(read_text(path), Loader=_SAFE_LOADER)
    except TextFileError as exc:
        raise ParamsError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def overlay(base: Mapping[str, Any], changes: Mapping[str, Any], source: str, prefix: str = "") -> dict:
    """Deep-merge `changes` onto `base`; a key absent from `base` is an error naming it."""
    merged = copy.deepcopy(dict(base))
    for key, value in changes.items():
        dotted = f"{prefix}{key}"
        if key not in merged and optional_kinds(dotted) is None:
            raise ParamsError(f"{source}: unknown key '{dotted}' (not in profiles/{BASE_PROFILE}.yaml)")
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = overlay(merged[key], value, source, prefix=f"{dotted}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render_profile(root: Path, profile: str) -> dict:
    """The full params of `profile`: the default profile with the profile's overlay applied.

    Both files are checked against the default profile's schema (alignflow/runtime/param_schema.py), so a
    wrong type in a profile fails here, naming the profile file and the dotted key.
    """
    names = available_profiles(root)
    if profile not in names:
        raise ParamsError(f"unknown profile '{profile}'; available: {', '.join(names)}")
    base_source = f"profiles/{BASE_PROFILE}.yaml"
    params = read_yaml(profiles_dir(root) / f"{BASE_PROFILE}.yaml")
    check_params(params, base_source, schema=params)
    if profile != BASE_PROFILE:
        path = profiles_dir(root) / f"{profile}.yaml"
        changes = read_yaml(path)
        source = f"profiles/{profile}.yaml"
        check_params(changes, source, schema=params, partial=True)
        params = overlay(params, changes, source)
    params["profile"] = profile
    return params


def write_params(root: Path, profile: str) -> bool:
    """Render `profile` into params.yaml; returns True when the file changed."""
    params = render_profile(root, profile)
    sources = f"{BASE_PROFILE}.yaml" + ("" if profile == BASE_PROFILE else f" + profiles/{profile}.yaml")
    text = HEADER.format(profile=profile, sources=sources) + yaml.safe_dump(params, sort_keys=False)
    target = root / "params.yaml"
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(target, text)
    return True


def load_params(root: Path) -> dict:
    """The params DVC sees (params.yaml), checked against the default profile's schema.

    Hand edits and `dvc exp run -S` values get the same checks as profiles, before any stage does
    anything. A project without profiles/default.yaml (a bare test project) has no schema to check.
    """
    params = read_yaml(root / "params.yaml")
    schema_path = profiles_dir(root) / f"{BASE_PROFILE}.yaml"
    if schema_path.is_file():
        check_params(params, "params.yaml", schema=read_yaml(schema_path))
    return params


def section(params: Mapping[str, Any], key: str, source: str = "params.yaml") -> dict:
    """A required top-level block of params, with an error naming it when absent."""
    if key not in params or not isinstance(params[key], Mapping):
        raise ParamsError(f"{source}: missing block '{key}'")
    return dict(params[key])


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the shape MLflow params and metrics want."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
