"""Team services started by the project: PostgreSQL, an MLflow tracking server, a Prefect server with a
process work pool and a worker, and a DVC remote on a shared folder (`alignflow services up|down|status`).

Everything binds 127.0.0.1 and is recorded in a git-ignored state file (`state.py`), so `down` stops
exactly what `up` started. Without that file the embedded defaults apply (ephemeral Prefect, SQLite
MLflow under mlflow/, the local DVC cache). This package's light entry points, used by the CLI and the
flow, are `client_env` (where a run should track) and `push_to_remote` (share outputs and the run-cache).
"""
from __future__ import annotations

from alignflow.services.client import apply_client_env, client_env
from alignflow.services.dvc_remote import push_to_remote

__all__ = ["apply_client_env", "client_env", "push_to_remote"]
