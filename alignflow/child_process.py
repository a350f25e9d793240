"""The helper servers a run starts as its children (Prefect's API server, the warm server): tied to the run.

`die_with_parent` is a `preexec_fn`: the child gets SIGTERM when the process that started it exits,
however it exits (Linux `PR_SET_PDEATHSIG`). `stop` ends a child at the end of the run: SIGTERM, then
SIGKILL if it has not exited within the grace period.
"""
from __future__ import annotations

import ctypes
import signal
import subprocess

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it exits, however it exits."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the caller's own stop still applies
        pass


def stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL; returns once the child has exited."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
