"""Atomic file writes: a reader (or a later stage) sees the old file or the complete new one, never half.

This is the one home of the project's atomic writers. It sits at the bottom of `pipelines/` and imports
only the standard library, so every `pipelines/<area>` can use it without a cycle and without reaching up
into `alignflow` (which `pipelines/` must not import); `alignflow/runtime/atomic.py` builds the
orchestration-specific clean-up on top of it. Arguments are always `(path, content)`.

Temporary names carry the writer's PID (`.NAME.tmp-PID-...`, `.NAME.old-PID`), so a later run can tell
the leftovers of a killed process from the work of a live one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_dir", "fsync_dir", "fsync_tree", "pid_alive", "replace_dir", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new entry in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file and folder under `path` (and `path` itself), so a crash after a rename finds it whole."""
    path = Path(path)
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a fsynced temp file and `os.replace`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should read like any other file
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 `text` through `write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented, key-sorted JSON (numpy scalars become floats) plus a final newline."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def replace_dir(staged: Path, final: Path) -> None:
    """Move a fully written staging folder into place, replacing whatever was there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() or final.is_symlink():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink(missing_ok=True)
    else:
        os.replace(staged, final)


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder next to `final`; it replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{os.getpid()}-"))
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_dir(staged, final)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (this process counts as alive): the test that
    tells a dead writer's temporary files from a live one's."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
