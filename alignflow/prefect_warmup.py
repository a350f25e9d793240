"""Start Prefect's temporary API server while `alignflow run` gets ready, not after.

Without PREFECT_API_URL, Prefect starts a temporary server (`SubprocessASGIServer`, a second Python
process) the first time a flow needs its API, and waits for it: seconds spent importing the server,
which dominated a no-op run. Prefect keeps one such server per process and per port, so starting that
same object early, from a thread, lets its start-up run on another core while this process asks DVC
which stages are stale; the flow then finds it running. With PREFECT_API_URL set (a team's server)
there is nothing to start.
"""
from __future__ import annotations

import threading


def start() -> threading.Thread | None:
    """Begin starting the temporary server in the background; None when Prefect will use a server URL."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client takes when the flow starts

    def boot() -> None:
        try:
            server.start()
        except Exception:  # noqa: BLE001 - the flow starts it again and reports what went wrong
            pass

    thread = threading.Thread(target=boot, name="prefect-server-warmup", daemon=True)
    thread.start()
    return thread


def wait(thread: threading.Thread | None) -> None:
    """Wait until the server answers (the flow must not find it half-started: it would not wait itself)."""
    if thread is not None:
        thread.join()
