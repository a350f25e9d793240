"""pipelines/atomic.py: the one set of atomic writers, path first, readable like any other output."""
from __future__ import annotations

import json
import os

import pytest

from pipelines.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writers_take_the_path_first_and_replace_the_old_file(tmp_path):
    """Breaks if an argument order flipped back to (content, path) or the writer returned something else."""
    target = tmp_path / "sub" / "out.txt"
    assert write_text_atomic(target, "first\n") == target
    assert write_text_atomic(target, "ünïcode\n") == target and target.read_text(encoding="utf-8") == "ünïcode\n"
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01") == tmp_path / "b.bin"
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": 0.5})
    assert (tmp_path / "m.json").read_text() == json.dumps({"a": 0.5, "b": 1}, indent=2) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "m.json", "sub"]


def test_outputs_honour_the_umask_not_mkstemps_0600(tmp_path):
    """Breaks if files kept mkstemp's owner-only mode (data written by one user unreadable to the next)."""
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "x.jsonl", "{}\n")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """Breaks if an error mid-write could truncate the previous output or leave a temp file behind."""
    target = tmp_path / "keep.txt"
    write_text_atomic(target, "old\n")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
