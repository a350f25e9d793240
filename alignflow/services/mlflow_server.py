"""The MLflow tracking server: runs and the model registry in PostgreSQL, artifacts proxied by the server.

Clients only need `MLFLOW_TRACKING_URI=http://HOST:PORT`: artifacts go through the server
(`--artifacts-destination`), so workers need no access to the artifact folder. The database URL (with
its password) reaches the server through its environment, not its command line. The server's job
runner (seven huey consumer processes for GenAI features the pipeline does not use) is switched off.
"""
from __future__ import annotations

import sys
from pathlib import Path

from alignflow.services import processes
from alignflow.services.state import Service

DEFAULT_PORT = 5000


def launch(data_dir: Path, database_url: str, port: int, env: dict[str, str]) -> Service:
    """Start the server; `ready(service)` tells when it answers."""
    artifacts = (data_dir / "mlflow-artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--artifacts-destination", artifacts.as_uri()]
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "MLFLOW_BACKEND_STORE_URI": database_url, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return processes.start("mlflow", cmd, data_dir / "logs" / "mlflow.log", server_env, data_dir, port=port, url=url)


def ready(service: Service):
    return processes.http_ok(f"{service.url}/health")
