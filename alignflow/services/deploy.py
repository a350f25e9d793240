"""`alignflow deploy`: the pipeline flow as a deployment on the services' process work pool.

The deployment runs `flows/pipeline.py:alignflow_pipeline` from this workspace (`flow.from_source`),
with the workspace root as its parameter and, in the job's environment, the MLflow server and the
served-root guard (SERVED_ROOT_ENV, as `alignflow serve` sets it): a root edited in the Prefect UI to
point elsewhere is refused by the flow. One deployment per workspace with concurrency limit 1, since
a workspace runs one flow at a time (its lock would refuse a second).

The servers are this workspace's services when they are up; on a cluster machine whose services run
elsewhere, PREFECT_API_URL and MLFLOW_TRACKING_URI name them and `--pool` the machine's work pool.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.services.processes import is_running
from alignflow.services.state import load_state

ENTRYPOINT = "flows/pipeline.py:alignflow_pipeline"
FLOW_NAME = "alignflow"  # @flow(name=...) in flows/pipeline.py


@dataclass(frozen=True)
class Target:
    api_url: str
    mlflow_url: str
    pool: str


def target(root: Path, pool: str | None = None, environ: dict[str, str] | None = None) -> Target:
    """Where to deploy: this workspace's running services, else the servers the environment names."""
    environ = os.environ if environ is None else environ
    state = load_state(root)
    needed = ("mlflow", "prefect-server", "prefect-worker")
    if state is not None and all(n in state.services and is_running(state.services[n]) for n in needed):
        return Target(state.url("prefect-server"), state.url("mlflow"), pool or state.pool)
    api, mlflow = environ.get("PREFECT_API_URL"), environ.get("MLFLOW_TRACKING_URI")
    if api and mlflow and pool:
        return Target(api, mlflow, pool)
    raise AlignflowError("no services to deploy to: run `alignflow services up` in this workspace, or set "
                         "PREFECT_API_URL and MLFLOW_TRACKING_URI to the team's servers and pass --pool")


def default_name(root: Path) -> str:
    """The folder name plus a short hash of its path: two clones named alike get two deployments."""
    return f"{root.name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}"


def job_variables(root: Path, mlflow_url: str) -> dict:
    from flows.pipeline import SERVED_ROOT_ENV

    root = str(root.resolve())
    return {"working_dir": root, "env": {"MLFLOW_TRACKING_URI": mlflow_url, SERVED_ROOT_ENV: root, "PYTHONPATH": root}}


def deploy(root: Path, name: str, profile: str | None, stages: list[str] | None, to: Target) -> str:
    """Create or update the deployment; returns `flow/deployment`. Points this process at the server."""
    os.environ["PREFECT_API_URL"] = to.api_url  # before Prefect is imported
    from prefect import flow

    pipeline = flow.from_source(source=str(root.resolve()), entrypoint=ENTRYPOINT)
    pipeline.deploy(name=name, work_pool_name=to.pool, concurrency_limit=1, build=False, push=False,
                    parameters={"profile": profile, "stages": stages, "root": str(root.resolve())},
                    job_variables=job_variables(root, to.mlflow_url), print_next_steps=False, ignore_warnings=True,
                    description=f"alignflow pipeline of the workspace {root.resolve()}")
    return f"{FLOW_NAME}/{name}"


def run_and_wait(deployment: str, timeout: float):
    """Trigger a flow run of the deployment and wait for a worker to finish it; returns the flow run."""
    from prefect.deployments import run_deployment

    return run_deployment(name=deployment, timeout=timeout, poll_interval=3)
