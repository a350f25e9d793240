"""`alignflow services` end to end: real PostgreSQL, MLflow and Prefect servers, a work pool worker and a DVC
remote, started in a fresh clone (as root in CI: PostgreSQL then runs as its own system user).

One test, in order: `services up`; `deploy --run` (the worker runs the flow: world, tokenizer, base_lm of
the smoke profile, the shortest part of the DAG that registers a model); the MLflow server holds the
parent run, the stage runs with metrics and artifacts, the registered model; `alignflow run` in the same
workspace tracks to the servers without being told; a second clone with an empty cache pulls from the
remote and runs no stage; `services down --purge` leaves no process behind.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.project import cli, make_project, project_env, run_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STAGES = ("external_inputs", "world", "tokenizer", "base_lm")
EXECUTED = {"world", "tokenizer", "base_lm"}


def _api(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _our_processes(state) -> set[tuple[int, int]]:
    """(pid, start time) of every live process the services consist of: each group, and the postmaster's children."""
    from alignflow.services import processes

    found = set()
    for service in state.services.values():
        for pid in processes.group_members(service.pid):
            found.add((pid, processes.start_ticks(pid)))
    postmaster = state.services["postgresql"].pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid == postmaster:
                found.add((int(entry.name), processes.start_ticks(int(entry.name))))
    return found


def _flow_runs(client, experiment_id: str):
    return client.search_runs([experiment_id], filter_string="tags.`alignflow.kind` = 'flow'")


def test_services_deployment_tracks_pushes_and_a_second_clone_pulls(tmp_path):
    """Fails if any service does not start or bind loopback; if the deployment's flow run does not run on
    the pool's worker or does not track to the MLflow server (parent run, stage child runs with metrics,
    proxied artifacts, the registered model); if `alignflow run` ignores running services; if a flow does
    not push outputs and run-cache (the second clone would then execute stages); or if `down` leaves any
    of the services' processes, the DVC remote setting or the PostgreSQL cluster behind."""
    from mlflow import MlflowClient

    from alignflow.services import processes
    from alignflow.services.state import load_state

    for home in ("home", "home2"):
        (tmp_path / home).mkdir()  # PREFECT_HOME's parent: the second clone's ephemeral Prefect server needs it
    project = make_project(tmp_path / "first")
    env = project_env(tmp_path / "home")
    state = None
    try:
        up = cli(project, env, "services", "up", "--timeout", "400")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        state = load_state(project)
        assert set(state.services) == {"postgresql", "mlflow", "prefect-server", "prefect-worker"}
        assert all(s.url.startswith(("http://127.0.0.1:", "postgresql://alignflow@127.0.0.1:"))
                   for n, s in state.services.items() if n != "prefect-worker")
        status = cli(project, env, "services", "status")
        assert status.returncode == 0 and status.stdout.count("running") == 4, status.stdout
        mlflow_url, api = state.url("mlflow"), state.url("prefect-server")

        deployed = cli(project, env, "deploy", "--profile", "smoke", "--stages", "base_lm", "--run",
                       "--timeout", "1500")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-5000:]
        flow_run_id = re.search(r"flow run \S+ \(([0-9a-f-]{36})\): Completed", deployed.stdout)[1]
        flow_run = _api(f"{api}/flow_runs/{flow_run_id}")
        assert flow_run["deployment_id"] and flow_run["work_pool_name"] == state.pool

        client = MlflowClient(tracking_uri=mlflow_url)
        experiment = client.get_experiment_by_name("alignflow")
        (parent,) = _flow_runs(client, experiment.experiment_id)
        assert parent.data.tags["alignflow.flow_run_id"] == flow_run_id
        children = client.search_runs([experiment.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        by_stage = {run.data.tags["alignflow.stage"]: run for run in children}
        assert set(by_stage) == EXECUTED
        assert all(run.data.metrics for run in by_stage.values())
        assert client.list_artifacts(by_stage["base_lm"].info.run_id)  # uploaded through the server's proxy
        assert any((Path(state.data_dir) / "mlflow-artifacts").rglob("*"))
        versions = client.search_model_versions("name = 'base-lm'")
        assert [v.run_id for v in versions] == [by_stage["base_lm"].info.run_id]
        assert any(Path(state.remote_path).rglob("*")), "the flow pushed nothing to the DVC remote"

        # a plain `alignflow run` here finds the servers itself: nothing is stale, and it is tracked there
        proc, outcomes = run_flow(project, env, "--profile", "smoke", "--stages", "base_lm")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert not [s for s, row in outcomes.items() if row["status"] == "executed"]
        assert len(_flow_runs(client, experiment.experiment_id)) == 2
        assert _api(f"{api}/flow_runs/count", {}) == 2

        # a teammate's clone: dvc.lock from git, an empty cache, the shared remote
        git = ["git", "-c", "user.name=alignflow-test", "-c", "user.email=test@localhost"]
        subprocess.run([*git, "add", "dvc.lock"], cwd=project, check=True)
        subprocess.run([*git, "commit", "-qm", "smoke run"], cwd=project, check=True)
        second = tmp_path / "second"
        subprocess.run(["git", "clone", "-q", str(project), str(second)], check=True)
        assert not (second / ".dvc" / "cache").exists()
        dvc = [sys.executable, "-m", "dvc"]
        subprocess.run([*dvc, "remote", "add", "--local", "-d", "team", state.remote_path], cwd=second, check=True,
                       env=env, capture_output=True)
        # the lock holds only the stages run here: pull those (a whole-DAG lock needs no targets)
        pulled = subprocess.run([*dvc, "pull", "--run-cache", "--with-deps", "base_lm"], cwd=second, env=env,
                                capture_output=True, text=True)
        assert pulled.returncode == 0, pulled.stdout[-2000:] + pulled.stderr[-3000:]
        env2 = project_env(tmp_path / "home2", MLFLOW_TRACKING_URI=mlflow_url)
        proc, outcomes = run_flow(second, env2, "--profile", "smoke", "--stages", "base_lm")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert set(outcomes) == set(STAGES)
        assert {s: row["status"] for s, row in outcomes.items() if row["status"] == "executed"} == {}
        assert (second / "models" / "base_lm").is_dir()
    finally:
        started = _our_processes(state) if state is not None else set()
        down = cli(project, env, "services", "down", "--purge")
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert started and not [p for p, ticks in started if processes.start_ticks(p) == ticks]
    assert load_state(project) is None
    assert "alignflow-shared" not in (project / ".dvc" / "config.local").read_text()
    assert not Path(state.services["postgresql"].data).exists()
