"""Ctrl-C and SIGTERM end `alignflow run` within seconds, with the running stages stopped and rolled back.

Each stage runs as `dvc repro` in a process group of its own (`alignflow/stage_process.py`), which
registers here while it runs (`tracked`). Being in their own session, stage processes do not get the
terminal's Ctrl-C; this process forwards it. On the first SIGINT/SIGTERM the handler marks the run as
interrupted and sends SIGTERM to every process of each running stage group except its leader, the
`dvc` process: the stage command (the stage runtime turns SIGTERM into a clean exit that discards its
staging folders and marks its MLflow run FAILED) ends, DVC reports the stage failed and releases its
locks, the Prefect task restores the stage's previous outputs from the DVC cache and is not retried,
the flow submits no further stage, and the CLI exits 130 (SIGINT) or 143 (SIGTERM). Groups still
alive after `GRACE_S` get SIGKILL, as do all of them on a second signal.

Prefect's temporary API server is a child of this process too; it is left alone so the flow can
record the failure, and stops with this process.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

GRACE_S = 5.0
_state = {"signal": None}
_groups: set[int] = set()  # process-group ids (= leader pids) of the stage processes running now
_stopped: set[int] = set()  # groups sent SIGTERM: SIGKILL reaches what is left of them after GRACE_S


def requested() -> int | None:
    """The signal number that interrupted this run, or None."""
    return _state["signal"]


def running_groups() -> list[int]:
    return sorted(_groups)


@contextmanager
def tracked(pgid: int) -> Iterator[None]:
    """Register a stage's process group (started with `start_new_session=True`) while it runs.

    A group registered after the interrupt (a stage started in the same instant) is stopped at once.
    """
    _groups.add(pgid)
    try:
        if requested():
            _terminate_group(pgid)
        yield
    finally:
        _groups.discard(pgid)


def _terminate_group(pgid: int) -> None:
    """SIGTERM to the group's processes below its leader, so DVC (the leader) sees its command fail."""
    import psutil

    _stopped.add(pgid)
    try:
        members = psutil.Process(pgid).children(recursive=True)
    except psutil.Error:
        members = []
    if not members:  # the command has not started (or already ended): stop DVC itself
        _kill_group(pgid, signal.SIGTERM)
    for proc in members:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all(sig: int) -> None:
    for pgid in sorted(_groups | _stopped):
        _kill_group(pgid, sig)


def _escalate_later() -> None:
    timer = threading.Timer(GRACE_S, _kill_all, args=(signal.SIGKILL,))
    timer.daemon = True
    timer.start()


def _handle(signum, _frame) -> None:
    if _state["signal"] is not None:
        _kill_all(signal.SIGKILL)
        return
    _state["signal"] = signum
    print(f"\nalignflow: {signal.Signals(signum).name} received: stopping the running stages and restoring their "
          f"previous outputs (again to kill at once)", file=sys.stderr, flush=True)
    for pgid in running_groups():
        _terminate_group(pgid)
    _escalate_later()


def install() -> None:
    """Route SIGINT and SIGTERM of this process through `_handle` (main thread only, as Python requires)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)


def exit_code() -> int:
    return 128 + int(_state["signal"] or 0)
