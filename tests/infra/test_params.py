"""Profiles render into params.yaml; overlays cannot invent keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignflow.errors import ParamsError
from alignflow.params import flatten, overlay, render_profile, write_params
from tests.project import REPO


def _project(tmp_path: Path, default: dict, **profiles: dict) -> Path:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/default.yaml").write_text(yaml.safe_dump(default))
    for name, body in profiles.items():
        (tmp_path / f"profiles/{name}.yaml").write_text(yaml.safe_dump(body))
    return tmp_path


def test_overlay_merges_nested_keys_and_keeps_the_rest():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert overlay(base, {"a": {"b": 10}}, "x.yaml") == {"a": {"b": 10, "c": 2}, "d": 3}
    assert base["a"]["b"] == 1


def test_overlay_rejects_unknown_key_naming_file_and_dotted_key():
    with pytest.raises(ParamsError, match=r"smoke.yaml: unknown key 'a.typo'"):
        overlay({"a": {"b": 1}}, {"a": {"typo": 2}}, "profiles/smoke.yaml")


def test_render_and_write_params_is_idempotent(tmp_path):
    root = _project(tmp_path, {"seed": 0, "sft": {"lr": 1.0}}, fast={"sft": {"lr": 2.0}})
    assert render_profile(root, "fast") == {"seed": 0, "sft": {"lr": 2.0}, "profile": "fast"}
    assert write_params(root, "fast") is True
    assert write_params(root, "fast") is False
    assert yaml.safe_load((root / "params.yaml").read_text())["sft"]["lr"] == 2.0
    with pytest.raises(ParamsError, match="unknown profile 'nope'"):
        render_profile(root, "nope")


def test_broken_profile_yaml_is_named(tmp_path):
    root = _project(tmp_path, {"seed": 0})
    (root / "profiles/bad.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ParamsError, match="bad.yaml: not valid YAML"):
        render_profile(root, "bad")


def test_shipped_profiles_render():
    default = render_profile(REPO, "default")
    assert default["base_lm"]["model"]["num_hidden_layers"] >= 8  # deep enough for attention sharing
    smoke = render_profile(REPO, "smoke")
    assert set(flatten(smoke)) == set(flatten(default))


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
