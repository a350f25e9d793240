"""Profiles render into params.yaml; overlays cannot invent keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.params import flatten, overlay, render_profile, write_params
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


# ---------------------------------------------------------------- schema checks (param_schema.py)

SCHEMA = {"seed": 0, "rate": 0.5, "flag": True, "name": "x", "sizes": [1, 2], "corr": [0.7, 0.2],
          "block": {"n": 3, "opt": None}, "prefs": {"limit": None, "path": "a.jsonl"}}


def _valid(**changes) -> dict:
    import copy

    params = copy.deepcopy(SCHEMA)
    params.update(changes)
    return params


@pytest.mark.parametrize("changes, message", [
    ({"prefs": {"limit": "10", "path": "a.jsonl"}}, "params.yaml: prefs.limit: expected int or null, got str '10'"),
    ({"seed": True}, "params.yaml: seed: expected int, got bool True"),
    ({"seed": 1.5}, "params.yaml: seed: expected int, got float 1.5"),
    ({"rate": "0.5"}, "params.yaml: rate: expected number, got str '0.5'"),
    ({"rate": float("nan")}, "params.yaml: rate: expected a finite number, got nan"),
    ({"rate": float("-inf")}, "params.yaml: rate: expected a finite number, got -inf"),
    ({"flag": 1}, "params.yaml: flag: expected bool, got int 1"),
    ({"name": None}, "params.yaml: name: expected str, got null"),
    ({"sizes": [1, "2"]}, "params.yaml: sizes[1]: expected int, got str '2'"),
    ({"sizes": 4}, "params.yaml: sizes: expected list, got int 4"),
    ({"corr": [0.7, float("inf")]}, "params.yaml: corr[1]: expected a finite number, got inf"),
    ({"block": {"n": 3, "opt": {"a": 1}}}, "params.yaml: block.opt: expected null or a scalar, got mapping"),
    ({"block": None}, "params.yaml: block: expected mapping, got null"),
    ({"block": {"n": 3, "opt": None, "typo": 1}}, "params.yaml: unknown key 'block.typo'"),
    ({"block": {"n": 3}}, "params.yaml: missing key(s) 'block.opt'"),
    ({"profile": 7}, "params.yaml: profile: expected str, got int 7"),
])
def test_check_params_names_file_key_and_types(changes, message):
    """Each wrong hand edit gives one line naming the file, the dotted key, expected and actual type.
    Breaks if a check is dropped (bool accepted as int, NaN accepted, a typo key ignored, ...)."""
    from alignflow.runtime.param_schema import check_params

    with pytest.raises(ParamsError) as info:
        check_params(_valid(**changes), "params.yaml", schema=SCHEMA)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_check_params_accepts_what_the_default_allows():
    """int where a float is expected, null or a scalar where the default is null, the profile name,
    declared nullable keys. Breaks if the checker is stricter than the documented rules."""
    from alignflow.runtime.param_schema import check_params

    check_params(_valid(rate=2, block={"n": 1, "opt": "anything"}, corr=[1, 0], sizes=[], profile="smoke",
                        prefs={"limit": 10, "path": None}), "params.yaml", schema=SCHEMA)
    check_params({"rate": 3}, "profiles/x.yaml", schema=SCHEMA, partial=True)


def test_shipped_profiles_and_params_yaml_pass_the_schema():
    """Every shipped profile renders (render_profile checks it) and the committed params.yaml loads
    (load_params checks it). Breaks when a profile or params.yaml drifts from profiles/default.yaml."""
    from alignflow.runtime.params import available_profiles, load_params

    for name in available_profiles(REPO):
        render_profile(REPO, name)
    assert load_params(REPO)["prefs"]["invalid"] in ("error", "skip")


def test_every_null_default_declares_its_type():
    """A null default says nothing about the type, so param_schema.NULLABLE must declare it (else any
    scalar passes). Breaks when a key defaulting to null is added without a declaration."""
    from alignflow.runtime.param_schema import NULLABLE, _declared
    from alignflow.runtime.params import read_yaml

    nulls = [key for key, value in flatten(read_yaml(REPO / "profiles/default.yaml")).items() if value is None]
    assert nulls, "the default profile has null keys"
    assert [key for key in nulls if _declared(key) is None] == []
    assert all("null" in kinds for kinds in NULLABLE.values())


def test_profile_type_error_names_the_profile_file(tmp_path):
    """A wrong type in an overlay names that profile file, not params.yaml. Breaks if render_profile
    stops checking overlays (the bad value would reach params.yaml)."""
    root = _project(tmp_path, {"seed": 0, "prefs": {"limit": None}}, bad={"prefs": {"limit": "10"}})
    with pytest.raises(ParamsError, match=r"^profiles/bad\.yaml: prefs\.limit: expected int or null, got str '10'$"):
        render_profile(root, "bad")
    assert not (root / "params.yaml").exists()
    with pytest.raises(ParamsError, match=r"profiles/bad\.yaml: prefs\.limit"):
        write_params(root, "bad")  # nothing written either
    assert not (root / "params.yaml").exists()


def test_load_params_checks_hand_edits_and_bytes(tmp_path):
    """params.yaml is checked against profiles/default.yaml before any stage runs, and a non-UTF-8 byte
    names its line. Breaks if load_params skips the schema (the TypeError traceback of the issue)."""
    from alignflow.runtime.params import load_params

    root = _project(tmp_path, {"seed": 0, "prefs": {"limit": None}})
    (root / "params.yaml").write_text("seed: 0\nprefs:\n  limit: '10'\n")
    with pytest.raises(ParamsError, match=r"^params\.yaml: prefs\.limit: expected int or null, got str '10'$"):
        load_params(root)
    (root / "params.yaml").write_bytes(b"\xef\xbb\xbfseed: 0\nprefs:\n  limit: 3\n")
    assert load_params(root) == {"seed": 0, "prefs": {"limit": 3}}  # a BOM is fine
    (root / "params.yaml").write_bytes(b"seed: 0\n# caf\xe9\nprefs:\n  limit: 3\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: line 2: not valid UTF-8 \(byte 0xe9 at column 6\)"):
        load_params(root)
