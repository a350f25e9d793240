"""The Prefect API server on PostgreSQL (asyncpg), so several workers and runs can write at once.

SQLite, Prefect's default, breaks under concurrent writers; the server runs its migrations into the
`prefect` database on start. Its own Prefect home (UI files, settings) is kept in the data folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

from alignflow.services import processes
from alignflow.services.state import Service

DEFAULT_PORT = 4200


def server_env(env: dict[str, str], data_dir: Path, database_url: str) -> dict[str, str]:
    own = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}  # the server is the API, not a client of one
    return {**own, "PREFECT_HOME": str((data_dir / "prefect-server").resolve()),
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def launch(data_dir: Path, database_url: str, port: int, env: dict[str, str]) -> Service:
    """Start the server; `ready(service)` tells when it answers."""
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    return processes.start("prefect-server", cmd, data_dir / "logs" / "prefect-server.log",
                           server_env(env, data_dir, database_url), data_dir, port=port, url=api)


def ready(service: Service):
    return processes.http_ok(f"{service.url}/health")
