"""Ctrl-C and SIGTERM end `alignflow run` within seconds, with the running stage stopped and rolled back.

DVC runs a stage's command as a child process and waits for it, so a signal to alignflow alone would
leave that child training on (and the workspace half-written). On the first SIGINT/SIGTERM the handler
marks the run as interrupted and sends SIGTERM to every stage process below this one (the stage
runtime turns it into a clean exit that discards its staging folders and marks its MLflow run
FAILED); DVC then reports the stage failed, the Prefect task restores the stage's previous outputs
from the DVC cache and is not retried, and the CLI exits 130 (SIGINT) or 143 (SIGTERM). Stage
processes still alive after `GRACE_S` get SIGKILL, as does everything on a second signal.

Prefect's temporary API server is a child of this process too; it is left alone so the flow can
record the failure, and stops with this process.
"""
from __future__ import annotations

import signal
import sys
import threading

GRACE_S = 5.0
_state = {"signal": None}


def requested() -> int | None:
    """The signal number that interrupted this run, or None."""
    return _state["signal"]


def _is_prefect_server(proc) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - a process that vanished is no server
        return False
    return "uvicorn" in cmdline or "prefect.server" in cmdline or "prefect server" in cmdline


def stage_processes() -> list:
    """Descendants of this process except Prefect's server (and its own children)."""
    import psutil

    me = psutil.Process()
    servers = [p for p in me.children() if _is_prefect_server(p)]
    spared = {p.pid for s in servers for p in [s, *s.children(recursive=True)]}
    return [p for p in me.children(recursive=True) if p.pid not in spared]


def _signal_all(sig: int) -> None:
    import psutil

    for proc in stage_processes():
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _escalate_later() -> None:
    timer = threading.Timer(GRACE_S, _signal_all, args=(signal.SIGKILL,))
    timer.daemon = True
    timer.start()


def _handle(signum, _frame) -> None:
    if _state["signal"] is not None:
        _signal_all(signal.SIGKILL)
        return
    _state["signal"] = signum
    print(f"\nalignflow: {signal.Signals(signum).name} received: stopping the running stage and restoring its "
          f"previous outputs (again to kill at once)", file=sys.stderr, flush=True)
    _signal_all(signal.SIGTERM)
    _escalate_later()


def install() -> None:
    """Route SIGINT and SIGTERM of this process through `_handle` (main thread only, as Python requires)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)


def exit_code() -> int:
    return 128 + int(_state["signal"] or 0)
