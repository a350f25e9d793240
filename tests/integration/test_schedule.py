"""`alignflow serve`: a scheduled deployment on a real `prefect server` bound to loopback, triggered once."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.project import make_project, project_env

pytestmark = pytest.mark.integration
CRON = "0 3 * * *"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        result = predicate()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _prefect(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_scheduled_deployment_registers_and_runs(tmp_path):
    root = make_project(tmp_path / "alignflow")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = project_env(tmp_path, PREFECT_API_URL=url)
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=open(logs / "server.log", "w"),
                              stderr=subprocess.STDOUT)
    served = None
    try:
        _wait(lambda: _healthy(url), 180, "prefect server health", server)
        served = subprocess.Popen([sys.executable, "-m", "alignflow.cli", "serve", "--cron", CRON, "--profile", "smoke",
                                   "--stages", "world", "--name", "nightly"], cwd=root, env=env,
                                  stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT)
        inspect = _wait(lambda: (lambda p: p if p.returncode == 0 else None)(
            _prefect(env, "deployment", "inspect", "alignflow/nightly")), 180, "deployment registration", served)
        assert CRON in inspect.stdout
        run = _prefect(env, "deployment", "run", "alignflow/nightly", "--watch", "--watch-timeout", "400", timeout=450)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-3000:] + (logs / "serve.log").read_text()[-5000:]
        assert "Completed" in output
        assert (root / "data/world/metrics.json").is_file()
        assert not (root / "models").exists()  # only the requested stage (and its upstream) ran
    finally:
        for proc in (served, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
