"""The alignflow Prefect flow, derived from dvc.yaml: one task per stage, run one at a time.

Stages share one DVC workspace, so they run sequentially in topological order; DVC decides which
are stale. The flow opens one MLflow parent run; each executed stage adds a child run.
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed

from alignflow import interrupt, services

from alignflow.runtime import tracking
from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.params import write_params
from alignflow.runtime.paths import repo_root
from alignflow.runtime.stage_graph import load_stage_graph
from alignflow.workspace_lock import workspace_lock
from tasks.reproduce import BAD_INPUT_PREFIX, reproduce_stage

SERVED_ROOT_ENV = "ALIGNFLOW_SERVED_ROOT"


def format_table(results: list[dict]) -> str:
    """A plain-text table of what each stage did and its headline metrics."""
    lines = [f"{'stage':<18} {'status':<11} {'seconds':>8}  metrics", "-" * 84]
    for row in results:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["metrics"].items())
        lines.append(f"{row['stage']:<18} {row['status']:<11} {row['seconds']:>8.1f}  {shown}")
        if row.get("published"):
            pub = row["published"]
            alias = "champion+candidate" if pub["champion"] else "candidate"
            lines.append(f"{'':<18} registered {pub['name']} v{pub['version']} as {alias} ({pub['reason']})")
    return "\n".join(lines)


@flow(name="alignflow")
def alignflow_pipeline(profile: str | None = None, stages: list[str] | None = None, root: str | None = None,
                       retries: int = 1) -> list[dict]:
    """Reproduce the DVC pipeline (all stages, or `stages` and their upstream) under MLflow tracking."""
    served = os.environ.get(SERVED_ROOT_ENV)
    if served and Path(root or os.getcwd()).resolve() != Path(served).resolve():
        # a deployment's parameters can be edited in the Prefect UI: never let that point it at another folder
        raise AlignflowError(f"this deployment serves {Path(served).resolve()}; refusing root={root}")
    root_path = repo_root(root)
    interrupt.install()  # here, not in the CLI: Prefect installs its own SIGTERM handler when a flow starts
    # a deployment runs this flow without the CLI: the lock (re-entrant for the CLI's own call) keeps
    # two runs from rewriting params.yaml or driving DVC in one workspace at once
    with workspace_lock(root_path, f"alignflow flow run {flow_run.get_name() or ''}".strip()):
        try:
            return _run_stages(root_path, profile, stages, retries)
        except BadInput as exc:
            return Failed(message=str(exc))  # the stage's own line, without a traceback


class BadInput(Exception):
    """A stage refused its input; its message is the stage's one-line error."""


def _run_stages(root_path: Path, profile: str | None, stages: list[str] | None, retries: int) -> list[dict]:
    import mlflow

    logger = get_run_logger()
    if profile:
        changed = write_params(root_path, profile)
        logger.info("profile %s %s params.yaml", profile, "rendered into" if changed else "matches")
    graph = load_stage_graph(root_path)
    order = graph.order(stages)
    experiment_id = tracking.configure(root_path)
    commit, dirty = tracking.git_commit(root_path)
    flow_run_id = str(flow_run.get_id() or "")
    results: list[dict] = []
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"flow:{flow_run.get_name() or 'local'}",
                          tags={"alignflow.kind": "flow", "alignflow.profile": profile or "params.yaml",
                                "alignflow.git_commit": commit, "alignflow.git_dirty": str(dirty).lower(),
                                "alignflow.flow_run_id": flow_run_id,
                                "alignflow.stages": ",".join(order)}) as parent:
        for name in order:
            if interrupt.requested():
                raise RuntimeError(f"interrupted by {interrupt.requested()} before stage {name}")
            task = reproduce_stage.with_options(retries=retries)
            state = task(str(root_path), graph.stages[name], parent.info.run_id, flow_run_id, return_state=True)
            if state.is_failed() and (state.message or "").startswith(BAD_INPUT_PREFIX):
                raise BadInput(state.message)  # inside the MLflow run, so the parent run ends FAILED
            results.append(state.result())  # any other failure raises the stage's exception here
        mlflow.set_tag("alignflow.executed", ",".join(r["stage"] for r in results if r["status"] == "executed"))
    logger.info("stage summary\n%s", format_table(results))
    services.push_to_remote(root_path, logger)  # outputs and run-cache to the DVC remote, when one is configured
    return results


def serve(cron: str, profile: str | None, stages: list[str] | None, root: Path, name: str = "scheduled") -> None:
    """Register a scheduled deployment of the flow on the Prefect server at PREFECT_API_URL and serve it."""
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("PREFECT_API_URL is not set: start `prefect server start --host 127.0.0.1` first")
    os.environ[SERVED_ROOT_ENV] = str(Path(root).resolve())  # flow runs of this server inherit it
    # limit=1: a scheduled run never overlaps the previous one (the workspace lock would refuse it anyway)
    alignflow_pipeline.serve(name=name, cron=cron, limit=1,
                             parameters={"profile": profile, "stages": stages, "root": str(root)})
