"""One `alignflow run` or `alignflow study` per workspace: they rewrite params.yaml and drive DVC.

The lock is an advisory `flock` on `.alignflow/run.lock`, taken before anything is touched. The kernel
drops it when its process dies (even by SIGKILL), so a lock left by a killed run is taken over with
no manual step; the file's content (who holds it) is only for the refusal message. Stage commands
do not inherit the lock's descriptor (Python opens files non-inheritable), so a stage still running
after its parent died cannot keep the workspace locked. The lock is re-entrant within one process:
the CLI takes it before starting the Prefect flow, and the flow (also run by deployments without the
CLI) takes it again at no cost.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alignflow.runtime.errors import AlignflowError

LOCK_FILE = ".alignflow/run.lock"
BUSY_EXIT = 3
_held: dict[str, int] = {}  # resolved lock path -> depth, for this process


class WorkspaceBusy(AlignflowError):
    """Another alignflow process holds this workspace."""

    exit_code = BUSY_EXIT


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "another alignflow process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"`{info.get('command', 'alignflow')}` (pid {info.get('pid')} on {info.get('host')}, since {started})"


@contextmanager
def workspace_lock(root: Path, command: str, wait: bool = False, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the workspace for `command`; refuse at once (or wait with `wait`) when another process has it."""
    path = (Path(root) / LOCK_FILE).resolve()
    key = str(path)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if not wait:
                    raise WorkspaceBusy(f"workspace {Path(root).resolve()} is busy: {holder} holds {LOCK_FILE}; "
                                        f"wait for it to finish or pass --wait") from None
                if not announced:
                    print(f"alignflow: waiting for {holder} to release {LOCK_FILE}", file=sys.stderr)
                    announced = True
                time.sleep(poll_s)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
