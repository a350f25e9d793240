"""`alignflow deploy`: the pipeline flow as a deployment on the services' process work pool.

The deployment runs `flows/pipeline.py:alignflow_pipeline` from this workspace (`flow.from_source`),
with the workspace root as its parameter and, in the job's environment, the MLflow server and the
served-root guard (SERVED_ROOT_ENV, as `alignflow serve` sets it): a root edited in the Prefect UI to
point elsewhere is refused by the flow. One deployment per workspace with concurrency limit 1, since
a workspace runs one flow at a time (its lock would refuse a second).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.services.processes import is_running
from alignflow.services.state import ServicesState, load_state

ENTRYPOINT = "flows/pipeline.py:alignflow_pipeline"
FLOW_NAME = "alignflow"  # @flow(name=...) in flows/pipeline.py


def running_state(root: Path) -> ServicesState:
    state = load_state(root)
    needed = ("mlflow", "prefect-server", "prefect-worker")
    if state is None or not all(n in state.services and is_running(state.services[n]) for n in needed):
        raise AlignflowError("the services are not up in this workspace: run `alignflow services up` first")
    return state


def default_name(root: Path) -> str:
    """The folder name plus a short hash of its path: two clones named alike get two deployments."""
    return f"{root.name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}"


def job_variables(root: Path, state: ServicesState) -> dict:
    from flows.pipeline import SERVED_ROOT_ENV

    root = str(root.resolve())
    return {"working_dir": root,
            "env": {"MLFLOW_TRACKING_URI": state.url("mlflow"), SERVED_ROOT_ENV: root, "PYTHONPATH": root}}


def deploy(root: Path, name: str, profile: str | None, stages: list[str] | None) -> str:
    """Create or update the deployment; returns `flow/deployment`. Points this process at the server."""
    state = running_state(root)
    os.environ["PREFECT_API_URL"] = state.url("prefect-server")  # before Prefect is imported
    from prefect import flow

    pipeline = flow.from_source(source=str(root.resolve()), entrypoint=ENTRYPOINT)
    pipeline.deploy(name=name, work_pool_name=state.pool, concurrency_limit=1, build=False, push=False,
                    parameters={"profile": profile, "stages": stages, "root": str(root.resolve())},
                    job_variables=job_variables(root, state), print_next_steps=False,
                    description=f"alignflow pipeline of the workspace {root.resolve()}")
    return f"{FLOW_NAME}/{name}"


def run_and_wait(deployment: str, timeout: float):
    """Trigger a flow run of the deployment and wait for a worker to finish it; returns the flow run."""
    from prefect.deployments import run_deployment

    return run_deployment(name=deployment, timeout=timeout, poll_interval=3)
