"""Warm start for stage commands: `python -m stages.X` runs in a fork of a process that has its libraries imported.

Each stage is a fresh `python -m stages.X` that DVC starts, and importing what it uses costs ~7 s of CPU
before the stage does anything (torch ~1.8 s, transformers ~3 s, MLflow with its SQL store ~2 s, SciPy,
matplotlib): over the default DAG's 41 stages, ~5 minutes of CPU on a 2-core machine. `alignflow run`
therefore starts one warm server (`alignflow/warm_server.py`) that imports those third-party libraries
once and listens on a Unix socket; stage processes learn its address from ALIGNFLOW_WARM_SOCKET.

`stages/__init__.py` calls `hand_off()` before anything else: the command sends its module, arguments,
working directory and environment to the server, with its stdin/stdout/stderr as file descriptors; the
server forks a child that takes them over and runs the module as `__main__`, importing project code
fresh (an edit made during a run is seen, as in a cold start). This process waits for the child, passes
SIGTERM/SIGINT/SIGHUP on to it and exits with its status, so DVC sees the same command, output and exit
code as before. If this process dies, the child is stopped (SIGTERM, then SIGKILL after a grace period).

Whenever the fork could differ from a cold start, the server refuses and the command runs cold, exactly
as without it: another interpreter or working directory, an environment that differs in anything but
the keys set per stage (`PER_STAGE_ENV`), a command line other than `python -m stages.X ...`. So does a
server that is not up yet or gone. Only the standard library is imported here: a cold start stays cold-fast.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys

SOCKET_ENV = "ALIGNFLOW_WARM_SOCKET"
SWITCH_ENV = "ALIGNFLOW_WARM_START"  # "off" runs every stage cold
# set per stage by alignflow (stage_process.stage_env), by DVC and by the shell DVC runs the command in
PER_STAGE_ENV = frozenset({"ALIGNFLOW_PARENT_RUN_ID", "ALIGNFLOW_RUN_RECORD", "ALIGNFLOW_FLOW_RUN_ID", SOCKET_ENV,
                           "DVC_STAGE", "DVC_ROOT", "PWD", "OLDPWD", "SHLVL", "_"})
PACKAGE = "stages"  # the package whose modules are warm-started (its __init__ calls hand_off)
KILLED_EXIT = 128 + signal.SIGKILL  # the child ended without reporting a status (killed)
_HEADER = struct.Struct("!I")
_MAX_FDS = 3


def send_frame(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """One length-prefixed JSON message, with file descriptors attached when given."""
    data = json.dumps(message).encode("utf-8")
    payload = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [payload], list(fds)) if fds else sock.send(payload)
    if sent < len(payload):
        sock.sendall(payload[sent:])


def recv_frame(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """The next message and the file descriptors that came with it; (None, fds) when the peer has closed."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, _MAX_FDS)
    data = _read_at_least(sock, data, _HEADER.size)
    if data is None:
        return None, list(fds)
    end = _HEADER.size + _HEADER.unpack_from(data)[0]
    data = _read_at_least(sock, data, end)
    return (None if data is None else json.loads(data[_HEADER.size:end])), list(fds)


def _read_at_least(sock: socket.socket, data: bytes, size: int) -> bytes | None:
    """`data` extended from the socket to at least `size` bytes; None if the peer closes first."""
    while len(data) < size:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    return data


def stage_module(orig_argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, args) of a `python -m stages.X ARGS` command line; None for any other shape."""
    if len(orig_argv) >= 3 and orig_argv[1] == "-m" and orig_argv[2].startswith(PACKAGE + "."):
        return orig_argv[2], list(orig_argv[3:])
    return None


def env_difference(server_env: dict, stage_env: dict) -> list[str]:
    """Keys, outside PER_STAGE_ENV, whose values differ between the server's environment and a stage's."""
    keys = (set(server_env) | set(stage_env)) - PER_STAGE_ENV
    return sorted(k for k in keys if server_env.get(k) != stage_env.get(k))


def hand_off() -> None:
    """Run this `python -m stages.X` command in a fork of the warm server and exit with its status.

    Returns (and the command starts cold) when no server is named, the command has another shape, the
    server cannot be reached or refuses. Called while Python is still locating the module (`sys.argv[0]`
    is `-m` then), so importing a stage module from other code never hands anything off.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path or os.environ.get(SWITCH_ENV, "on").lower() in ("off", "0", "false") or sys.argv[:1] != ["-m"]:
        return
    command = stage_module(list(getattr(sys, "orig_argv", [])))
    if command is None:
        return
    module, args = command
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        send_frame(sock, {"module": module, "args": args, "cwd": os.getcwd(), "executable": sys.executable,
                          "env": dict(os.environ)}, fds=(0, 1, 2))
        reply, _ = recv_frame(sock)
    except OSError:
        reply = None
    if not reply or "pid" not in reply:  # refused, or no server: start cold
        sock.close()
        return
    code = _wait_for_child(sock, int(reply["pid"]))
    os._exit(code)


def _wait_for_child(sock: socket.socket, pid: int) -> int:
    """Forward signals to the child until it reports its status and has exited; that status."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # the child may already be gone; its report below still counts
    code = None
    while True:  # a forwarded signal interrupts no call here: Python retries it after the handler (PEP 475)
        try:
            message, _ = recv_frame(sock)
        except OSError:
            message = None
        if message is None:
            break
        if "exit" in message:
            code = int(message["exit"])
    if pidfd is not None:  # the child's last flushes and exit handlers are done before DVC goes on
        select.select([pidfd], [], [])
        os.close(pidfd)
    if code is None:
        print(f"alignflow: the warm-started stage process {pid} ended without an exit status (killed?)",
              file=sys.stderr, flush=True)
        return KILLED_EXIT
    return code
