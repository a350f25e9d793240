"""Prefect's temporary API server for one `alignflow run`, started without importing Prefect's server here.

Without PREFECT_API_URL, Prefect starts a temporary server the first time a flow needs its API: a
uvicorn process serving `prefect.server.api.server:create_app`, the same for every run. Doing that
through Prefect's own `SubprocessASGIServer` means importing `prefect.server` in this process first
(about 3 s on these machines, most of a no-op run), and its start-up waits in this process. This
module starts the same uvicorn command (same app factory, same ephemeral-mode settings, 127.0.0.1, a
free port) before Prefect is imported, and points this process at it with PREFECT_API_URL; the
server then boots on another core while this process asks DVC which stages are stale.

The server is a child in a session of its own (the terminal's Ctrl-C goes to this process, which
records the interrupted run through it) that gets SIGTERM if this process dies (Linux
`PR_SET_PDEATHSIG`), and is stopped when the run ends: after Prefect's log and event workers have
drained, so the run's records are complete. With PREFECT_API_URL already set (a team's server, the
user's own) or Prefect's temporary server disabled, nothing is started.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from alignflow import child_process
from alignflow.runtime.errors import AlignflowError

START_TIMEOUT_S = 90.0  # a loaded 2-core machine can take tens of seconds to import the server
STOP_TIMEOUT_S = 10.0
_PORT_TRIES = 3
# what Prefect's own temporary server sets (prefect/server/api/server.py, SubprocessASGIServer): no UI, and
# the server-side services an ephemeral server runs
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _wanted(env: dict) -> bool:
    """True when Prefect would start a temporary server: no API URL and the ephemeral server not disabled."""
    if env.get("PREFECT_API_URL"):
        return False
    return env.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """One uvicorn process serving Prefect's API on 127.0.0.1 for this process's flow run."""

    def __init__(self, log_file: Path):
        self.log_file = Path(log_file)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> None:
        self.port = _free_port()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                env={**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, **_SERVER_ENV}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=child_process.die_with_parent)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the API answers its health check; a port taken meanwhile is retried on another one."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        tries = 1
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                if tries >= _PORT_TRIES:
                    raise AlignflowError(f"Prefect's temporary server exited with code {code} before answering; "
                                         f"its output: {self.log_file}")
                tries += 1
                self._launch()
                os.environ["PREFECT_API_URL"] = self.api_url
                continue
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise AlignflowError(f"Prefect's temporary server did not answer within {timeout:.0f} s; "
                             f"its output: {self.log_file}")

    def stop(self) -> None:
        """Drain Prefect's client-side workers (logs, events), then stop the server and wait for it."""
        if self.proc is None:
            return
        _drain_prefect_workers()
        proc, self.proc = self.proc, None
        child_process.stop(proc, STOP_TIMEOUT_S)


def _drain_prefect_workers() -> None:
    """Send what Prefect's background workers still hold (task logs, events) while the server is up."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # noqa: BLE001 - a record that cannot be sent must not keep the run from ending
            pass


def start(root: Path) -> TemporaryServer | None:
    """Start the temporary server for a run in `root` (None when Prefect has a server URL): call before Prefect is imported."""
    if not _wanted(dict(os.environ)):
        return None
    if "prefect" in sys.modules:  # too late to point this process's Prefect settings elsewhere
        return None
    server = TemporaryServer(Path(root) / ".alignflow" / "prefect-server.log")
    server._launch()
    os.environ["PREFECT_API_URL"] = server.api_url
    atexit.register(server.stop)
    return server
