"""The temporary Prefect API server of `alignflow run` (alignflow/prefect_server.py)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest

from alignflow import prefect_server
from tests.project import REPO


@pytest.mark.parametrize("env, wanted", [
    ({}, True),
    ({"PREFECT_API_URL": "http://127.0.0.1:4200/api"}, False),  # a team's server: nothing to start
    ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}, False),
    ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"}, True),
])
def test_started_only_when_prefect_would_start_one(env, wanted):
    assert prefect_server._wanted(env) is wanted


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_serves_then_stops_and_dies_with_its_parent(tmp_path):
    """A parent starts the server, checks /api/health, prints the server's pid and is SIGKILLed: no stop() runs,
    yet the server must exit (PR_SET_PDEATHSIG). Fails if the server outlives an `alignflow run` killed hard."""
    script = textwrap.dedent(f"""
        import os, sys, time, urllib.request
        from pathlib import Path
        os.environ.pop("PREFECT_API_URL", None)
        from alignflow import prefect_server
        server = prefect_server.start(Path({str(tmp_path)!r}))
        server.wait_ready()
        assert os.environ["PREFECT_API_URL"] == server.api_url
        with urllib.request.urlopen(server.api_url + "/health", timeout=5) as reply:
            assert reply.status == 200
        print(server.proc.pid, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline().strip()
        assert line.isdigit(), f"the parent did not report a running server (exit {parent.poll()})"
        server_pid = int(line)
        assert psutil.pid_exists(server_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _gone(server_pid, within=15), "the temporary server outlived its parent"
    finally:
        parent.kill()
    assert (tmp_path / ".alignflow" / "prefect-server.log").is_file()
