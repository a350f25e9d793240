"""`alignflow.stale.params_files_parsed_once`: one parse of params.yaml per DVC status, same answers.

Fails if DVC moves `dvc.dependency.param.load_path` (the wrapper would silently stop applying: the
parse count goes back to one per stage) or if the cached parse hides a params change.
"""
import subprocess
import sys
from pathlib import Path

import yaml

from alignflow.stale import params_files_parsed_once


def _dvc(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True, capture_output=True)


def _toy(root: Path) -> None:
    """Three stages reading different keys of one params.yaml, reproduced once (dvc.lock written)."""
    (root / "params.yaml").write_text(yaml.safe_dump({"a": 1, "b": {"c": 2}, "d": [3, 4]}))
    stages = {name: {"cmd": f"echo {name}", "params": [key]} for name, key in (("s1", "a"), ("s2", "b.c"), ("s3", "d"))}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "repro", "-q")


def _status(root: Path) -> dict:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.status()


def test_one_parse_per_status_and_same_answers(tmp_path, monkeypatch):
    _toy(tmp_path)
    from dvc.dependency import param

    calls = []
    original = param.load_path

    def counting(path, fs, **kwargs):
        calls.append(str(path))
        return original(path, fs, **kwargs)

    monkeypatch.setattr(param, "load_path", counting)
    assert _status(tmp_path) == {}
    assert len(calls) == 3  # DVC alone: one parse per stage with params
    calls.clear()
    with params_files_parsed_once():
        assert _status(tmp_path) == {}
    assert len(calls) == 1
    assert param.load_path is counting  # restored after the block

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"a": 1, "b": {"c": 5}, "d": [3, 4]}))
    plain = _status(tmp_path)
    with params_files_parsed_once():
        once = _status(tmp_path)
    assert once == plain
    assert [key.rsplit(":", 1)[-1] for key in once] == ["s2"]
