"""The alignflow Prefect flow, derived from dvc.yaml: one task per stage, independent stages at once.

One in-process `dvc status` of the whole graph decides up front which stages are stale
(`alignflow/stale.py`); a fresh stage is recorded as up to date (and reconciled with the registry)
without starting DVC. Stale stages run through DVC, each in its own subprocess and environment
(`tasks/reproduce.py`), on Prefect's thread-pool task runner: a stage is submitted once everything it
reads from has succeeded, with those stages' futures as `wait_for`, at most `jobs` at a time
(`alignflow/dag_schedule.py`); `jobs=1` runs the serial topological order. DVC queues concurrent
repros for its repository lock and commits dvc.lock. A failed stage stops its descendants only; the
flow fails once every independent branch has finished. The flow opens one MLflow parent run; each
executed stage adds a child run. While stages run, a warm server (`alignflow/warm_server.py`) holds
torch, transformers and MLflow imported, and each stage command runs in a fork of it instead of
importing them again (~7 s of CPU per stage); `ALIGNFLOW_WARM_START=off` starts every stage cold.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from alignflow import interrupt, services, warm_server

from alignflow.dag_schedule import DagSchedule
from alignflow.runtime import tracking
from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.params import load_params, write_params
from alignflow.runtime.paths import repo_root
from alignflow.runtime.stage_graph import load_stage_graph
from alignflow.stage_process import available_cores, stage_env, thread_share
from alignflow.stale import status_plan
from alignflow.workspace_lock import workspace_lock
from tasks.reproduce import BAD_INPUT_PREFIX, StageOutcome, record_fresh_stages, reproduce_stage

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


@flow(name="alignflow", task_runner=ThreadPoolTaskRunner(max_workers=available_cores()))
def alignflow_pipeline(profile: str | None = None, stages: list[str] | None = None, root: str | None = None,
                       retries: int = 1, jobs: int | None = None) -> list[dict]:
    """Reproduce the DVC pipeline (all stages, or `stages` and their upstream) under MLflow tracking.

    `jobs`: stages run at once (default: the cores this process may use; the task runner's
    `max_workers` bounds it too, so a caller asking for more passes a larger runner, as the CLI does).
    """
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
            return _run_stages(root_path, profile, stages, retries, jobs or available_cores())
        except StagesFailed as exc:
            return Failed(message=str(exc))  # the stages' own lines, without a traceback


class StagesFailed(Exception):
    """Stages failed (the others finished); a bad input's message is the stage's one-line error."""


def _run_stages(root_path: Path, profile: str | None, stages: list[str] | None, retries: int,
                jobs: int) -> list[dict]:
    import mlflow

    logger = get_run_logger()
    if profile:
        changed = write_params(root_path, profile)
        logger.info("profile %s %s params.yaml", profile, "rendered into" if changed else "matches")
    graph, order, to_run = _take_plan(root_path, stages)
    schedule = DagSchedule(to_run, {n: graph.graph.successors(n) for n in to_run}, jobs)
    threads = thread_share(available_cores(), schedule.max_concurrent)
    logger.info("%d of %d stages stale; up to %d at once, %d thread(s) each", len(to_run), len(order),
                schedule.max_concurrent, threads)
    experiment_id = tracking.configure(root_path)
    commit, dirty = tracking.git_commit(root_path)
    flow_run_id = str(flow_run.get_id() or "")
    progress = _Progress(len(order))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"flow:{flow_run.get_name() or 'local'}",
                          tags={"alignflow.kind": "flow", "alignflow.profile": profile or "params.yaml",
                                "alignflow.git_commit": commit, "alignflow.git_dirty": str(dirty).lower(),
                                "alignflow.flow_run_id": flow_run_id,
                                "alignflow.stages": ",".join(order)}) as parent:
        parent_id = parent.info.run_id
        fresh = [graph.stages[name] for name in order if name not in to_run]
        if fresh:
            for row in record_fresh_stages(str(root_path), fresh, parent_id, n=len(fresh)):
                progress.done(row)
        task = reproduce_stage.with_options(retries=retries)

        def submit(name: str, wait_for: list):
            return task.submit(str(root_path), graph.stages[name], parent_id, flow_run_id, threads, wait_for=wait_for)

        stage_base_env = stage_env(os.environ, parent_run_id=None, record="", flow_run_id=None, threads=threads)
        with warm_server.running(root_path, stage_base_env, len(to_run)):
            _run_stale(schedule, submit, progress)
        results = [progress.rows[n] for n in order]
        mlflow.set_tag("alignflow.executed", ",".join(r["stage"] for r in results if r["status"] == "executed"))
        mlflow.log_dict(results, tracking.FLOW_STAGES_ARTIFACT)  # what `alignflow report` shows of the last run
        logger.info("stage summary\n%s", format_table(results))
        if interrupt.requested():
            raise RuntimeError(f"interrupted by signal {interrupt.requested()}")
        if schedule.failed:
            raise StagesFailed(_failure_message(results))  # inside the MLflow run: the parent run ends FAILED
    services.push_to_remote(root_path, logger)  # outputs and run-cache to the DVC remote, when one is configured
    return results


def _run_stale(schedule: DagSchedule, submit, progress: "_Progress") -> None:
    """Submit each stage as soon as it is ready (`submit(name, wait_for=futures)`), until none is left."""
    futures: dict = {}
    started: dict[str, float] = {}
    while not schedule.done:
        if interrupt.requested():
            for name in schedule.stop():
                progress.done(_not_run(name, f"interrupted by signal {interrupt.requested()}"))
        for name in schedule.ready():
            started[name] = time.time()
            futures[name] = submit(name, wait_for=[futures[n] for n in schedule.needs[name]])
        for name, failed in schedule.blocked.items():
            if name not in progress.rows:
                progress.done(_not_run(name, f"upstream {', '.join(failed)} failed"))
        if not schedule.running:
            continue
        finished = next(as_completed([futures[n] for n in schedule.running]))
        name = next(n for n in schedule.running if futures[n] is finished)
        finished.wait()  # sets the future's final state from the task engine's return
        state = finished.state
        schedule.finish(name, state.is_completed())
        progress.done(state.result() if state.is_completed() else _failed(name, state, time.time() - started[name]))


_PREPARED: dict[tuple, tuple] = {}  # (root, targets) -> (workspace stamp, plan): see `prepare`


def prepare(root: Path, profile: str | None, stages: list[str] | None) -> None:
    """Render the profile and ask DVC which stages are stale, before the flow starts.

    The CLI calls this (holding the workspace lock) while Prefect's temporary server starts in
    another process; the flow takes the plan if params.yaml, dvc.yaml and dvc.lock are as they were,
    and asks DVC again otherwise (a deployment's run always asks). MLflow's store is opened here too,
    for the same reason (the flow's own `tracking.configure` then finds it open).
    """
    if profile:
        write_params(root, profile)
    stamp = _stamp(root)
    _PREPARED[(str(root), tuple(stages or ()))] = (stamp, _plan(root, stages))
    tracking.configure(root)


def _stamp(root: Path) -> tuple:
    stamps = []
    for name in ("params.yaml", "dvc.yaml", "dvc.lock"):
        try:
            st = (root / name).stat()
            stamps.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
        except FileNotFoundError:
            stamps.append((name, None))
    return tuple(stamps)


def _take_plan(root: Path, stages: list[str] | None):
    prepared = _PREPARED.pop((str(root), tuple(stages or ())), None)
    if prepared is not None and prepared[0] == _stamp(root):
        return prepared[1]
    return _plan(root, stages)


def _plan(root: Path, stages: list[str] | None):
    """(stage graph, stages in serial order, the stale ones among them) from one DVC index and status."""
    from dvc.repo import Repo, lock_repo

    # one DVC index for both, under DVC's repository lock (each locked DVC call would otherwise drop the
    # index the graph was read from and parse dvc.yaml and dvc.lock again)
    with Repo(str(root)) as repo, lock_repo(repo):
        graph = load_stage_graph(root, repo)
        order = graph.order(stages or graph.default_targets(_runs_ablations(root)))
        return graph, order, status_plan(root, graph, repo).stale(order)


def _runs_ablations(root: Path) -> bool:
    """params.yaml `run_ablations` (default true: a hand-written params.yaml runs the whole graph)."""
    value = load_params(root).get("run_ablations", True)
    if not isinstance(value, bool):
        raise AlignflowError(f"{root / 'params.yaml'}: run_ablations must be true or false, got {value!r}")
    return value


class _Progress:
    """Outcomes by stage, and a `[k/N] stage status seconds` line as each stage finishes."""

    def __init__(self, total: int):
        self.total, self.rows = total, {}

    def done(self, row: dict) -> None:
        self.rows[row["stage"]] = row
        extra = f"  ({row['reason']})" if row.get("reason") else ""
        print(f"[{len(self.rows)}/{self.total}] {row['stage']} {row['status']} {row['seconds']:.1f}s{extra}",
              flush=True)


def _not_run(name: str, reason: str) -> dict:
    return {**StageOutcome(stage=name, status="not run", seconds=0.0).__dict__, "reason": reason}


def _failed(name: str, state, seconds: float) -> dict:
    message = state.message or ""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the task's own exception says why
        message = message if message.startswith(BAD_INPUT_PREFIX) else str(exc)
    return {**StageOutcome(stage=name, status="failed", seconds=round(seconds, 2)).__dict__, "reason": message}


def _failure_message(results: list[dict]) -> str:
    """One line per failed stage; only bad input (exit 2) failures start with BAD_INPUT_PREFIX."""
    failed = [r for r in results if r["status"] == "failed"]
    if all(r["reason"].startswith(BAD_INPUT_PREFIX) for r in failed):
        return "; ".join(r["reason"] for r in failed)
    lines = [r["reason"].splitlines()[0] if r["reason"] else f"stage {r['stage']} failed" for r in failed]
    skipped = [r["stage"] for r in results if r["status"] == "not run"]
    if skipped:
        lines.append(f"not run (upstream failed): {', '.join(skipped)}")
    return f"{len(failed)} stage(s) failed: " + "; ".join(lines)


def serve(cron: str, profile: str | None, stages: list[str] | None, root: Path, name: str = "scheduled") -> None:
    """Register a scheduled deployment of the flow on the Prefect server at PREFECT_API_URL and serve it."""
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("PREFECT_API_URL is not set: start `prefect server start --host 127.0.0.1` first")
    os.environ[SERVED_ROOT_ENV] = str(Path(root).resolve())  # flow runs of this server inherit it
    # limit=1: a scheduled run never overlaps the previous one (the workspace lock would refuse it anyway)
    alignflow_pipeline.serve(name=name, cron=cron, limit=1,
                             parameters={"profile": profile, "stages": stages, "root": str(root)})
