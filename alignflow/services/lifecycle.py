"""`services up | down | status`: start the team services in order, stop exactly them, report them.

Order: PostgreSQL, then the MLflow and Prefect servers (started together, both migrate their
database on first start), the work pool and its worker, the DVC remote. The state file is written
after every start, so a failed `up` (or a later `down`) stops whatever did start; a failed `up`
rolls back at once and names the log of the service that failed.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.services import dvc_remote, mlflow_server, postgres, prefect_server, processes, work_pool
from alignflow.services.ports import choose_port
from alignflow.services.state import ServicesState, clear_state, load_state, save_state, state_path

ORDER = ("postgresql", "mlflow", "prefect-server", "prefect-worker")
DEFAULT_DATA_DIR = ".alignflow/services"
POSTGRES_PORT = 5432


def base_env() -> dict[str, str]:
    """The caller's environment without client settings, with this interpreter's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def up(root: Path, data_dir: Path | None = None, remote: Path | None = None, pool: str = work_pool.DEFAULT_POOL,
       timeout: float = 240, say=print) -> ServicesState:
    existing = load_state(root)
    if existing is not None:
        stopped = [n for n, s in existing.services.items() if not processes.is_running(s)]
        if stopped:
            raise AlignflowError(f"{state_path(root)} lists {', '.join(stopped)} as started but not running: "
                                 "run `alignflow services down` first")
        say("services already up")
        return existing
    data = (data_dir or root / DEFAULT_DATA_DIR).resolve()
    data.mkdir(parents=True, exist_ok=True)
    state = ServicesState(data_dir=str(data), pool=pool)
    try:
        _start_all(root, state, remote, timeout, say)
    except BaseException:
        say("start-up failed: stopping what did start")
        _stop_all(root, state, say)
        raise
    return state


def _start_all(root: Path, state: ServicesState, remote: Path | None, timeout: float, say) -> None:
    data, env, taken = Path(state.data_dir), base_env(), set()

    cluster = postgres.ensure_cluster(data)
    pg_port = choose_port(POSTGRES_PORT, taken)
    taken.add(pg_port)
    say(f"postgresql: starting on 127.0.0.1:{pg_port} (cluster {cluster.data})")
    state.services["postgresql"] = postgres.start(cluster, pg_port, timeout)
    save_state(root, state)
    postgres.create_databases(cluster, pg_port)
    ml_port = choose_port(mlflow_server.DEFAULT_PORT, taken)
    taken.add(ml_port)
    pf_port = choose_port(prefect_server.DEFAULT_PORT, taken)
    taken.add(pf_port)
    mlflow = state.services["mlflow"] = mlflow_server.launch(data, cluster.url(pg_port, "mlflow", "postgresql+psycopg2"), ml_port, env)
    prefect = state.services["prefect-server"] = prefect_server.launch(
        data, cluster.url(pg_port, "prefect", "postgresql+asyncpg"), pf_port, env)
    save_state(root, state)
    say(f"mlflow: starting at {mlflow.url}; prefect server: starting at {prefect.url} (first start migrates the "
        "databases)")
    processes.wait_until(mlflow, mlflow_server.ready(mlflow), timeout)
    processes.wait_until(prefect, prefect_server.ready(prefect), timeout)
    client = work_pool.client_env(env, prefect.url, data / "prefect-client")
    work_pool.create_pool(state.pool, client, data)
    # flow runs the worker starts inherit its environment: they track to the MLflow server
    worker = state.services["prefect-worker"] = work_pool.launch_worker(
        state.pool, data, {**client, "MLFLOW_TRACKING_URI": mlflow.url})
    save_state(root, state)
    say(f"prefect worker: polling work pool {state.pool}")
    processes.wait_until(worker, work_pool.worker_ready(prefect.url, state.pool), timeout)
    remote_path = (remote or data / "dvc-remote").resolve()
    dvc_remote.configure_remote(root, remote_path)
    state.remote_name, state.remote_path = dvc_remote.REMOTE_NAME, str(remote_path)
    save_state(root, state)


def down(root: Path, purge: bool = False, say=print) -> None:
    """Stop what the state file records (nothing else), drop the DVC remote it added; `purge`: delete the data."""
    state = load_state(root)
    if state is None:
        say(f"no services recorded in {state_path(root)}: nothing to stop")
        data = (root / DEFAULT_DATA_DIR).resolve()
        if purge and data.is_dir():
            _purge(data, say)
        return
    _stop_all(root, state, say, keeps_data=not purge)
    if purge:
        _purge(Path(state.data_dir), say)


def _stop_all(root: Path, state: ServicesState, say, keeps_data: bool = True) -> None:
    for name in reversed(ORDER):
        service = state.services.get(name)
        if service is None:
            continue
        stopped = postgres.stop(service) if name == "postgresql" else processes.stop(service)
        say(f"{name}: {'stopped' if stopped else 'was not running'}")
    if state.remote_name:
        dvc_remote.remove_remote(root, state.remote_name)
        kept = f" (its folder {state.remote_path} stays)" if keeps_data else ""
        say(f"dvc remote {state.remote_name}: removed from .dvc/config.local{kept}")
    clear_state(root)


def _purge(data: Path, say) -> None:
    postgres.remove_cluster(data)
    shutil.rmtree(data, ignore_errors=True)
    say(f"deleted the service data in {data}")


def status(root: Path) -> list[dict]:
    """One row per recorded service: name, running, pid, url, log."""
    state = load_state(root)
    if state is None:
        return []
    rows = [{"name": name, "running": processes.is_running(s), "pid": s.pid, "url": s.url, "log": s.log}
            for name in ORDER if (s := state.services.get(name))]
    if state.remote_name:
        rows.append({"name": "dvc-remote", "running": Path(state.remote_path).is_dir(), "pid": None,
                     "url": f"{state.remote_name} -> {state.remote_path}", "log": None})
    return rows
