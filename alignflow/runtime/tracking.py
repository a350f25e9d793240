"""MLflow at the stage boundary: where runs go, how they nest, and what lineage they carry.

Default store: SQLite under `<repo>/mlflow/` with file artifacts beside it. Any other tracking
server is used by setting MLFLOW_TRACKING_URI. A flow run opens a parent run and hands its id to
stages through ALIGNFLOW_PARENT_RUN_ID; a stage run outside a flow (plain `dvc repro`) is a
top-level run of its own.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from alignflow.runtime.paths import mlflow_dir

EXPERIMENT_ENV = "ALIGNFLOW_EXPERIMENT"
PARENT_ENV = "ALIGNFLOW_PARENT_RUN_ID"
RECORD_ENV = "ALIGNFLOW_RUN_RECORD"
FLOW_RUN_ENV = "ALIGNFLOW_FLOW_RUN_ID"
SYSTEM_METRICS_ENV = "ALIGNFLOW_SYSTEM_METRICS"
DEFAULT_EXPERIMENT = "alignflow"
FLOW_STAGES_ARTIFACT = "stages.json"  # on a flow's parent run: each stage's outcome (status, seconds, metrics)


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir(root).resolve()}/mlflow.db"


def configure(root: Path) -> str:
    """Point MLflow at this project's store and make sure the experiment exists; returns its id."""
    import mlflow

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # children (DVC stage commands) inherit the same store
    name = os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (mlflow_dir(root) / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


def system_metrics_on() -> bool:
    """Whether a stage run records MLflow system metrics (`system/*`: CPU, memory, disk, network).

    On by default: a sampling thread reads psutil and logs every 10 s
    (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL changes that), so a stage's resource use sits next to
    its curves. `ALIGNFLOW_SYSTEM_METRICS=off` turns it off, e.g. for a wall-time benchmark.
    """
    return os.environ.get(SYSTEM_METRICS_ENV, "on").lower() not in ("off", "0", "false")


def git_commit(root: Path) -> tuple[str, bool]:
    """(HEAD commit, whether the work tree has uncommitted changes); ('unknown', True) outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip() != ""
        return head, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def file_md5(path: Path) -> str:
    """The md5 DVC records for a single file (plain md5 of its bytes)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()
