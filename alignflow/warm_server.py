"""The warm server of `alignflow run`: imports the stages' libraries once, forks a child per stage command.

Protocol and client: `alignflow/warm_start.py`. `running()` starts `python -m alignflow.warm_server` for
the length of a flow run (in a private folder, a session of its own, stopped with the run and killed if
the run's process dies) and points stage processes at its socket. The server imports `PRELOAD`
(third-party only), forgets the project modules it imported itself, then listens. Each request is
checked against this process (same interpreter, working directory and environment outside the per-stage
keys), else refused; an accepted one is forked: the child takes the command's stdin/stdout/stderr,
working directory, environment and a session of its own, runs the module as `__main__` and reports its
exit status. Each request, served or refused, is a line in the server's log
(`reports/logs/warm-server.log`).

A fork is only safe from a single-threaded process: the server refuses every request if an import left
a thread running.
"""
from __future__ import annotations

import argparse
import importlib
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alignflow import child_process
from alignflow.warm_start import SOCKET_ENV, SWITCH_ENV, env_difference, recv_frame, send_frame

# what stages import at the top of their modules, heaviest first; a name that fails to import is skipped
PRELOAD = (
    "torch", "transformers", "transformers.models.llama.modeling_llama", "transformers.models.llava.modeling_llava",
    "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto", "tokenizers",
    "safetensors.torch", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "mlflow.pyfunc", "scipy.stats", "sklearn", "pandas",
    "mlflow.system_metrics.system_metrics_monitor", "sqlalchemy.dialects.sqlite", "alembic.command", "git",
    "matplotlib", "matplotlib.pyplot", "matplotlib.backends.backend_agg", "numpy", "ot", "sacrebleu", "soundfile",
    "kaldi_native_fbank", "PIL", "dvc.repo", "dvc.repo.index", "dvc.repo.graph", "dvc.lock", "scmrepo.git",
    "ruamel.yaml", "networkx", "yaml", "tqdm", "psutil",
)
PROJECT_PACKAGES = ("alignflow", "pipelines", "stages")
LOG_FILE = "reports/logs/warm-server.log"
START_MIN_STAGES = 3  # fewer stale stages than this: the server's own imports would cost more than they save
STOP_GRACE_S = 5.0
_ACCEPT_POLL_S = 1.0
_REQUEST_TIMEOUT_S = 10.0


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


_ENV_BEFORE_IMPORTS: dict[str, str] = {}  # this process's environment before `preload` ran


def preload(names=PRELOAD) -> list[str]:
    """Import `names`; the ones that failed. Then drop project modules so every child imports them fresh."""
    _ENV_BEFORE_IMPORTS.clear()
    _ENV_BEFORE_IMPORTS.update(os.environ)
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library missing only makes its stages start colder
            failed.append(name)
    for name in [m for m in sys.modules if m.split(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]
    return failed


def refusal(request: dict) -> str | None:
    """Why this request must start cold, or None when a fork of this process is equivalent to a cold start."""
    if threading.active_count() != 1:
        return f"{threading.active_count()} threads in the server: forking it is unsafe"
    if request.get("executable") != sys.executable:
        return f"another interpreter ({request.get('executable')})"
    if os.path.realpath(str(request.get("cwd"))) != os.path.realpath(os.getcwd()):
        return f"another working directory ({request.get('cwd')})"
    differ = env_difference(_ENV_BEFORE_IMPORTS or dict(os.environ), dict(request.get("env") or {}))
    if differ:
        return f"environment differs in {', '.join(differ[:5])}"
    return None


def stage_environment(requested: dict) -> dict:
    """The command's environment plus what the preloaded imports changed in ours, as a cold import would."""
    env = {k: v for k, v in requested.items() if k != SOCKET_ENV}  # the stage's own subprocesses start cold
    before = _ENV_BEFORE_IMPORTS or dict(os.environ)
    env.update({k: v for k, v in os.environ.items() if before.get(k) != v})
    for key in set(before) - set(os.environ):
        env.pop(key, None)
    return env


def serve(path: Path, names=PRELOAD) -> None:
    """Import `names`, then answer requests on the socket at `path` until SIGTERM."""
    started = time.time()
    failed = preload(names)
    _log(f"imported in {time.time() - started:.1f} s" + (f" (not available: {', '.join(failed)})" if failed else ""))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(_ACCEPT_POLL_S)
    _log(f"listening on {path}")
    while True:
        _reap()
        try:
            conn, _ = listener.accept()
        except (socket.timeout, InterruptedError):
            continue
        conn.settimeout(_REQUEST_TIMEOUT_S)  # a caller that connects and says nothing cannot hold the server
        _answer(conn, listener)


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _log(f"pid {pid} ended with status {os.waitstatus_to_exitcode(status)}")


def _answer(conn: socket.socket, listener: socket.socket) -> None:
    try:
        request, fds = recv_frame(conn)
    except (OSError, ValueError) as exc:
        _log(f"unreadable request: {exc}")
        conn.close()
        return
    why = refusal(request) if request else "empty request"
    if why or len(fds) != 3:
        why = why or f"{len(fds)} file descriptors instead of 3"
        _log(f"refused {request.get('module') if request else '?'}: {why}")
        try:
            send_frame(conn, {"refused": why})
        except OSError:
            pass
        _close(fds)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _become_stage(conn, listener, request, fds)  # never returns
    _log(f"{request['module']} ({request['env'].get('DVC_STAGE', '?')}): pid {pid}")
    _close(fds)
    conn.close()


def _close(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _become_stage(conn: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    """In the child: take the command's place, run its module as __main__, report the status, exit.

    The exit is the interpreter's own (SystemExit up through the server's loop), so threads are joined and
    exit handlers run as they would at the end of a cold command.
    """
    code = 1
    try:
        listener.close()
        conn.settimeout(None)
        os.setsid()  # like the cold command under DVC: the terminal's Ctrl-C reaches the flow, not the stage
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        env = stage_environment(request["env"])
        os.environ.clear()
        os.environ.update(env)
        send_frame(conn, {"pid": os.getpid()})
        threading.Thread(target=_stop_when_caller_goes, args=(conn,), daemon=True).start()
        code = run_module(request["module"], request["args"])
    except BaseException:  # noqa: BLE001 - before the module ran: the command has not been told our pid
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        send_frame(conn, {"exit": code})
    except OSError:
        pass
    raise SystemExit(code)


def run_module(module: str, args: list[str]) -> int:
    """`python -m module args` in this process: its exit status as the interpreter would give it."""
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0) & 0xFF
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - what the interpreter prints for an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def _stop_when_caller_goes(conn: socket.socket) -> None:
    """The command that handed off has died (killed): nobody waits for this stage, so stop it."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def running(root: Path, env: dict, stale: int) -> Iterator[Path | None]:
    """A warm server for this flow run: stage processes started meanwhile find it through os.environ.

    `env` is the environment the stages get (less their per-stage keys). Nothing is started for fewer
    than START_MIN_STAGES stale stages or with ALIGNFLOW_WARM_START=off; yields the socket path or None.
    """
    if stale < START_MIN_STAGES or os.environ.get(SWITCH_ENV, "on").lower() in ("off", "0", "false"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="alignflow-warm-"))  # 0700: only this user can connect
    path = folder / "sock"
    log_file = Path(root) / LOG_FILE
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alignflow.warm_server", "--socket", str(path)], cwd=root,
                                env={k: v for k, v in env.items() if k != SOCKET_ENV}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=child_process.die_with_parent)
    os.environ[SOCKET_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(SOCKET_ENV, None)
        child_process.stop(proc, STOP_GRACE_S)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path, help="where to listen (a path in a private folder)")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="comma-separated modules to import first")
    args = parser.parse_args(argv)
    serve(args.socket, tuple(name for name in args.preload.split(",") if name))


if __name__ == "__main__":
    main()
