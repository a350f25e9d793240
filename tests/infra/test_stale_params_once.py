"""`alignflow.stale.each_file_read_once`: one params parse and one hash per path in a DVC status, same answers.

Fails if DVC moves `dvc.dependency.param.load_path` or `dvc.output.Output._get_hash_meta` (the wrappers
would silently stop applying: the counts go back to one per stage) or if a cached answer hides a change.
"""
import subprocess
import sys
from pathlib import Path

import yaml

from alignflow.stale import each_file_read_once


def _dvc(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True, capture_output=True)


def _toy(root: Path) -> None:
    """Three stages reading different keys of one params.yaml and the same code folder, reproduced once."""
    (root / "params.yaml").write_text(yaml.safe_dump({"a": 1, "b": {"c": 2}, "d": [3, 4]}))
    (root / "code").mkdir()
    (root / "code" / "lib.py").write_text("x = 1\n")
    stages = {name: {"cmd": f"echo {name}", "params": [key], "deps": ["code"]}
              for name, key in (("s1", "a"), ("s2", "b.c"), ("s3", "d"))}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "repro", "-q")


def _status(root: Path) -> dict:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.status()


def _stages(status: dict) -> list[str]:
    return sorted(key.rsplit(":", 1)[-1] for key in status)


def test_one_read_per_file_and_same_answers(tmp_path, monkeypatch):
    _toy(tmp_path)
    from dvc.dependency import param
    from dvc.output import Output

    parses, hashes = [], []
    load_path, get_hash_meta = param.load_path, Output._get_hash_meta
    count_parses = lambda path, fs, **kw: parses.append(path) or load_path(path, fs, **kw)  # noqa: E731
    count_hashes = lambda out: hashes.append(out.fs_path) or get_hash_meta(out)  # noqa: E731
    monkeypatch.setattr(param, "load_path", count_parses)
    monkeypatch.setattr(Output, "_get_hash_meta", count_hashes)
    assert _status(tmp_path) == {}
    assert (len(parses), len(hashes)) == (3, 3)  # DVC alone: once per stage
    parses.clear()
    hashes.clear()
    with each_file_read_once():
        assert _status(tmp_path) == {}
    assert (len(parses), len(hashes)) == (1, 1)
    assert (param.load_path, Output._get_hash_meta) == (count_parses, count_hashes)  # restored after the block

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"a": 1, "b": {"c": 5}, "d": [3, 4]}))
    plain = _status(tmp_path)
    with each_file_read_once():
        once = _status(tmp_path)
    assert once == plain and _stages(once) == ["s2"]

    (tmp_path / "code" / "lib.py").write_text("x = 2\n")
    with each_file_read_once():
        once = _status(tmp_path)
    assert once == _status(tmp_path) and _stages(once) == ["s1", "s2", "s3"]
