"""`alignflow services`: the state file, port choice, process bookkeeping, client env and DVC remote config.

Fast: real sockets, real short-lived processes and a real (empty) DVC repo, no servers.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignflow.runtime.errors import AlignflowError
from alignflow.services import client, dvc_remote, processes
from alignflow.services.ports import choose_port, port_is_free
from alignflow.services.state import Service, ServicesState, load_state, save_state, state_path


def _state(**services: Service) -> ServicesState:
    return ServicesState(data_dir="/srv/alignflow", pool="alignflow", remote_name="r", remote_path="/srv/remote",
                         services=services)


def _sleeper(tmp_path: Path, script: str = "sleep 60") -> Service:
    return processes.start("sleeper", ["sh", "-c", script], tmp_path / "logs" / "sleeper.log", dict(os.environ),
                           tmp_path, url="http://127.0.0.1:1")


def test_state_round_trip_is_private(tmp_path):
    """Fails if a recorded field is lost on the way through the file, or the file (it holds the database
    password in URLs of the servers' environment records) becomes readable by other users."""
    state = _state(mlflow=Service(name="mlflow", log="/x/mlflow.log", pid=12, start_ticks=34, port=5000,
                                  url="http://127.0.0.1:5000", data=None))
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    assert stat.S_IMODE(state_path(tmp_path).stat().st_mode) == 0o600


def test_unreadable_state_names_the_file(tmp_path):
    """Fails if a corrupt state file crashes with a traceback instead of one line naming it, or is
    silently taken as "no services" (then `down` would leave the recorded processes running)."""
    state_path(tmp_path).parent.mkdir(parents=True)
    state_path(tmp_path).write_text('{"data_dir": "/x"')
    with pytest.raises(AlignflowError, match="services.json"):
        load_state(tmp_path)
    assert load_state(tmp_path / "nowhere") is None


def test_choose_port_skips_a_port_in_use_and_taken_ones():
    """Fails if a port with a listener is handed out again (the second server would fail to bind), if
    a port chosen earlier in the same `up` is reused, or if a free usual port is not kept."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        used = busy.getsockname()[1]
        assert not port_is_free(used)
        other = choose_port(used)
        assert other != used and port_is_free(other)
    assert choose_port(used) == used  # free again: the usual port is kept
    assert choose_port(used, taken={used}) != used


def test_stop_ends_the_whole_group_and_spares_a_reused_pid(tmp_path):
    """Fails if `stop` leaves a service's child behind (a worker's flow run, a server's workers), or
    signals a process whose pid matches the record but whose start time does not (a reused pid)."""
    service = _sleeper(tmp_path, "sleep 60 & sleep 60")
    deadline = time.monotonic() + 10
    while len(processes.group_members(service.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    members = processes.group_members(service.pid)
    assert len(members) >= 2
    impostor = Service(name="x", log="", pid=service.pid, start_ticks=(service.start_ticks or 0) + 1)
    assert processes.stop(impostor) is False and processes.is_running(service)
    assert processes.stop(service, timeout=10) is True
    assert all(processes.start_ticks(pid) is None for pid in members)
    assert processes.stop(service) is False


def test_a_service_that_dies_at_start_names_its_log(tmp_path):
    """Fails if a crashed service is waited for until the timeout, or the error does not name its log and
    show the log's last lines (the user's only clue)."""
    service = _sleeper(tmp_path, "echo cannot bind 127.0.0.1; exit 3")
    with pytest.raises(processes.ServiceError) as info:
        processes.wait_until(service, lambda: False, timeout=60)
    assert service.log in str(info.value) and "cannot bind" in str(info.value) and "exited" in str(info.value)


def test_client_env_points_at_running_services_unless_the_user_chose(tmp_path, capsys):
    """Fails if runs are pointed at servers that are not running (a stale state file after a reboot), if a
    user's own MLFLOW_TRACKING_URI / PREFECT_API_URL is overridden, or if nothing changes when services are
    up (runs would keep tracking to SQLite)."""
    assert client.client_env(tmp_path, {}) == {}  # no state file: the embedded defaults
    mlflow = _sleeper(tmp_path)
    dead = Service(name="prefect-server", log="/x/p.log", pid=mlflow.pid, start_ticks=(mlflow.start_ticks or 0) + 1,
                   url="http://127.0.0.1:4200/api")
    save_state(tmp_path, _state(mlflow=Service(**{**mlflow.__dict__, "name": "mlflow"}), **{"prefect-server": dead}))
    try:
        assert client.client_env(tmp_path, {}) == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}
        assert "prefect-server" in capsys.readouterr().err
        assert client.client_env(tmp_path, {"MLFLOW_TRACKING_URI": "http://team:5000"}) == {}
    finally:
        processes.stop(mlflow, timeout=10)


def test_dvc_remote_is_local_config_and_push_needs_one(tmp_path):
    """Fails if the remote lands in the committed .dvc/config (every clone would inherit a machine's path),
    is not the default (a bare `dvc push` would not use it), survives `remove_remote`, or if a flow pushes
    when no remote is configured."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    assert dvc_remote.push_to_remote(tmp_path) is None
    dvc_remote.configure_remote(tmp_path, tmp_path / "shared")
    local = (tmp_path / ".dvc" / "config.local").read_text()
    assert dvc_remote.REMOTE_NAME in local and str(tmp_path / "shared") in local
    assert dvc_remote.REMOTE_NAME not in (tmp_path / ".dvc" / "config").read_text()
    assert dvc_remote.push_to_remote(tmp_path) == 0  # nothing tracked yet, but it did push (to the default)
    dvc_remote.remove_remote(tmp_path)
    assert dvc_remote.push_to_remote(tmp_path) is None


def test_deployment_guards_its_workspace_and_finds_its_servers(tmp_path):
    """Fails if the deployment's job environment loses the served-root guard (a root edited in the Prefect
    UI would then run the flow on another folder) or the MLflow server, if two clones with the same folder
    name share one deployment, or if a machine without local services cannot deploy to the team's servers
    named in its environment (or can without saying which pool)."""
    from alignflow.services import deploy
    from flows.pipeline import SERVED_ROOT_ENV

    variables = deploy.job_variables(tmp_path, "http://127.0.0.1:5000")
    assert variables["env"][SERVED_ROOT_ENV] == str(tmp_path.resolve())
    assert variables["env"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert deploy.default_name(tmp_path / "a" / "alignflow") != deploy.default_name(tmp_path / "b" / "alignflow")
    team = {"PREFECT_API_URL": "http://head:4200/api", "MLFLOW_TRACKING_URI": "http://head:5000"}
    assert deploy.target(tmp_path, "gpu-01", team) == deploy.Target("http://head:4200/api", "http://head:5000", "gpu-01")
    with pytest.raises(AlignflowError, match="services up"):
        deploy.target(tmp_path, None, team)


def test_purge_removes_the_cluster_and_its_empty_parent(tmp_path):
    """Fails if `down --purge` leaves the PostgreSQL cluster (as root it lives outside the workspace, in the
    postgres user's home, where nothing else would ever delete it) or the folder it made for clusters."""
    from alignflow.services import postgres
    from alignflow.services.state import write_json_private

    cluster = tmp_path / "pg-home" / "alignflow" / "abc123"
    (cluster / "data").mkdir(parents=True)
    (cluster / "data" / "PG_VERSION").write_text("15\n")
    write_json_private(tmp_path / "data" / "postgres.json", {"path": str(cluster), "password": "x"})
    postgres.remove_cluster(tmp_path / "data")
    assert not cluster.parent.exists() and (tmp_path / "pg-home").is_dir()
