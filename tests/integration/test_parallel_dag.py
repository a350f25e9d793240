"""`alignflow run --jobs 2` on a real toy DVC project (tests/toy_dag.py): two branches and a join, through the real
flow, Prefect's thread-pool task runner, `dvc repro` subprocesses and MLflow.

The flow is called in this process against one Prefect test server for the module, so twenty runs cost twenty
runs of the toy stages, not twenty Prefect start-ups.
"""
from __future__ import annotations

import shutil
import signal

import pytest

from alignflow.stage_process import available_cores, log_path, thread_share
from tests.toy_dag import LEFT, STAGES, lock_stages, make_toy, toy_env, write_inputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUNS = 20


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture()
def toy(tmp_path, monkeypatch, prefect_server):
    """A fresh toy workspace; the stage processes' environment comes from this process's (as under the CLI)."""
    import mlflow

    root = make_toy(tmp_path / "toy")
    for key, value in toy_env(dict(__import__("os").environ), tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)  # DVC names stages relative to the working directory, as under `alignflow run`
    previous_uri = mlflow.get_tracking_uri()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # the flow installs its own
    yield root
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    mlflow.set_tracking_uri(previous_uri)


def _run(root, jobs: int, retries: int = 1):
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.pipeline import alignflow_pipeline

    pipeline = alignflow_pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=jobs))
    return pipeline(root=str(root), jobs=jobs, retries=retries, return_state=True)


def _task_runs(flow_run_id) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


def _logs(flow_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # the task logs are sent in batches
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]


def test_twenty_runs_at_two_jobs_commit_what_the_serial_run_commits(toy, monkeypatch):
    """Breaks if concurrent `dvc repro`s lost DVC's repository lock (a run fails, or a stage ran without its
    dvc.lock entry updated), if the two branches did not run at once, or if the parallel dvc.lock differed from the
    serial run's for the same inputs. The run-cache is emptied before each run so every stage really executes."""
    root = toy
    monkeypatch.setenv("ALIGNFLOW_TRACKING", "off")  # the toy stages open no MLflow runs: faster
    serial = {}
    for variant in ("a", "b"):
        write_inputs(root, f"left {variant}", f"right {variant}")
        state = _run(root, jobs=1)
        assert state.is_completed(), state.message
        serial[variant] = lock_stages(root)
        assert set(serial[variant]) == set(STAGES)
    for i in range(RUNS):
        variant = "ab"[i % 2]
        write_inputs(root, f"left {variant}", f"right {variant}")
        shutil.rmtree(root / ".dvc" / "cache" / "runs", ignore_errors=True)  # or DVC would restore, not run
        state = _run(root, jobs=2)
        assert state.is_completed(), f"run {i}: {state.message}"
        assert {row["stage"]: row["status"] for row in state.result()} == dict.fromkeys(STAGES, "executed"), i
        assert lock_stages(root) == serial[variant], f"run {i}: dvc.lock differs from the serial run's"
        for stage in STAGES:
            assert "Unable to acquire lock" not in log_path(root, stage).read_text(), (i, stage)
    runs = _task_runs(state.state_details.flow_run_id)
    left, right = runs["left1"], runs["right1"]
    assert left.start_time < right.end_time and right.start_time < left.end_time  # the branch heads overlapped
    assert max(runs["left2"].end_time, runs["right2"].end_time) <= runs["join"].start_time


def test_a_failing_stage_stops_its_descendants_and_the_other_branch_is_committed(toy, capsys):
    """Breaks if a failure stopped the independent branch (left2 would not be committed), ran a stage below the
    failure, left the failed stage's outputs deleted, lost its traceback (per-stage log, Prefect log, MLflow
    artifact of its run), or reported the run as succeeded. Also checks each stage saw its share of the cores."""
    import mlflow

    root = toy
    assert _run(root, jobs=2).is_completed()
    before = lock_stages(root)
    previous_right = (root / "out/right1/value.txt").read_text()
    write_inputs(root, "left 1", "right fail")
    capsys.readouterr()
    state = _run(root, jobs=2, retries=0)
    printed = capsys.readouterr().out
    assert state.is_failed() and "right1 was told to fail" in state.message
    assert "not run (upstream failed): right2, join" in state.message and "bad input" not in state.message
    after = lock_stages(root)
    for stage in LEFT:  # the other branch ran and DVC committed it
        assert after[stage] != before[stage] and (root / f"out/{stage}/value.txt").read_text().startswith(stage)
    assert {s: after[s] for s in ("right1", "right2", "join")} == {s: before[s] for s in ("right1", "right2", "join")}
    assert (root / "out/right1/value.txt").read_text() == previous_right  # restored from the DVC cache
    assert "right2 not run 0.0s  (upstream right1 failed)" in printed and "join not run" in printed
    assert "right1 failed" in printed and "left2 executed" in printed
    log = log_path(root, "right1").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: right1 was told to fail" in log
    share = thread_share(available_cores(), 2)
    assert f"left1: read 7 characters; OMP_NUM_THREADS={share}" in log_path(root, "left1").read_text()
    messages = _logs(state.state_details.flow_run_id)
    assert "RuntimeError: right1 was told to fail" in messages and "Traceback (most recent call last):" in messages
    client = mlflow.MlflowClient()
    for stage, status in (("right1", "FAILED"), ("left2", "FINISHED")):
        [run] = client.search_runs([client.get_experiment_by_name("alignflow").experiment_id],
                                   filter_string=f"tags.`alignflow.stage` = '{stage}' and attributes.status = '{status}'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        assert [a.path for a in client.list_artifacts(run.info.run_id, "logs")] == [f"logs/{stage}.log"], stage
