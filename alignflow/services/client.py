"""Where a run on this machine should track and orchestrate: the services' URLs, when they are up.

A variable the user set (MLFLOW_TRACKING_URI, PREFECT_API_URL) always wins. Without a services state
file nothing changes, so the embedded defaults (SQLite MLflow, ephemeral Prefect) stay the default.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from alignflow.services.processes import is_running
from alignflow.services.state import load_state

CLIENT_VARIABLES = {"mlflow": "MLFLOW_TRACKING_URI", "prefect-server": "PREFECT_API_URL"}


def client_env(root: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """{variable: URL} for each running service whose variable is not set in `environ` (default os.environ)."""
    environ = os.environ if environ is None else environ
    state = load_state(root)
    if state is None:
        return {}
    found = {}
    for name, variable in CLIENT_VARIABLES.items():
        service = state.services.get(name)
        if service is None or environ.get(variable):
            continue
        if is_running(service):
            found[variable] = service.url
        else:
            print(f"alignflow: warning: the services state lists {name} at {service.url} but it is not running; "
                  "using the embedded default (run `alignflow services down`, then `up`)", file=sys.stderr)
    return found


def apply_client_env(root: Path) -> dict[str, str]:
    """Put `client_env` into this process's environment (call before Prefect is imported); returns it."""
    found = client_env(root)
    os.environ.update(found)
    return found
