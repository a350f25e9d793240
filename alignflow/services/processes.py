"""Background service processes: start one with its log file, wait until it answers, stop it again.

Each service runs in its own session (process group), so stopping it also stops what it spawned (a
worker's flow runs, a server's uvicorn workers) and nothing else. A pid is only signalled while its
kernel start time matches the one recorded at start, so a pid the kernel reused is never touched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

from alignflow.runtime.errors import AlignflowError
from alignflow.services.state import Service


class ServiceError(AlignflowError):
    """A service did not start or answer in time; the message names its log file."""


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when no such process is alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    if fields[0] == "Z":
        return None  # a zombie has exited already
    return int(fields[19])


def is_running(service: Service) -> bool:
    """The recorded process is alive (one that exited before its start time was read never is)."""
    if service.pid is None or service.start_ticks is None:
        return False
    return start_ticks(service.pid) == service.start_ticks


def start(name: str, cmd: list[str], log: Path, env: dict[str, str], cwd: Path, **record) -> Service:
    """Start `cmd` detached (own session, output appended to `log`) and record it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
    return Service(name=name, log=str(log), pid=proc.pid, start_ticks=start_ticks(proc.pid), **record)


def log_tail(log: str | Path, lines: int = 15) -> str:
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    return "\n".join(text[-lines:])


def wait_until(service: Service, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it holds; ServiceError naming the log when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if service.pid is not None and not is_running(service):
            raise ServiceError(f"{service.name} exited during start-up; see {service.log}:\n{log_tail(service.log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{service.name} did not answer within {timeout:.0f} s; see {service.log}:\n"
                               f"{log_tail(service.log)}")
        time.sleep(1)


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    return check


def stop(service: Service, timeout: float = 30) -> bool:
    """SIGTERM the service's process group, SIGKILL after `timeout`; False when it was not running."""
    if not is_running(service):
        return False
    _signal_group(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(service.pid):
        time.sleep(0.3)
    if _group_alive(service.pid):
        _signal_group(service.pid, signal.SIGKILL)
        while _group_alive(service.pid) and time.monotonic() < deadline + 10:
            time.sleep(0.2)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))
