"""Warm start of stage commands (alignflow/warm_start.py, alignflow/warm_server.py): the same output, exit code and
signals as a cold `python -m stages.X`, and a cold start whenever the fork could differ."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alignflow import warm_server
from alignflow.warm_start import PER_STAGE_ENV, SOCKET_ENV, SWITCH_ENV, env_difference, stage_module

# a stage package like the project's: its __init__ hands the command off; `probe` reports where it ran
_INIT = "from alignflow.warm_start import hand_off\nhand_off()\n"
_PROBE = textwrap.dedent("""
    import os, signal, sys, time
    print("pid", os.getpid(), "argv", sys.argv[1:], "stage", os.environ.get("DVC_STAGE"),
          "shared", os.environ.get("ALIGNFLOW_TEST_SHARED"),
          "socket", os.environ.get("ALIGNFLOW_WARM_SOCKET"), "main", __name__, "preloaded", "colorsys" in sys.modules,
          flush=True)
    what = sys.argv[1]
    if what == "exit":
        sys.exit(int(sys.argv[2]))
    if what == "raise":
        raise RuntimeError("broken stage")
    if what in ("wait", "mark"):
        def on_term(signum, frame):
            if what == "mark":
                open(sys.argv[2], "w").write("stopped")
            print("got SIGTERM", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(60)
""")


def _base_env() -> dict:
    """This environment less the per-stage keys and pytest's own (which changes between setup and call)."""
    env = {k: v for k, v in os.environ.items() if k not in PER_STAGE_ENV and k != "PYTEST_CURRENT_TEST"}
    return {**env, "ALIGNFLOW_TEST_SHARED": "kept"}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "__init__.py").write_text(_INIT)
    (tmp_path / "stages" / "probe.py").write_text(_PROBE)
    return tmp_path


@pytest.fixture
def server(project):
    """A warm server in `project` preloading one small module; yields (socket path, its log file)."""
    sock = project / "sock"
    log = project / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "alignflow.warm_server", "--socket", str(sock),
                                 "--preload", "colorsys"], cwd=project, env=_base_env(), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "listening" not in log.read_text() and time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    yield sock, log
    proc.terminate()
    proc.wait(timeout=10)


def _start(project, sock, *args, **extra_env):
    env = _base_env()
    env.update({SOCKET_ENV: str(sock), "DVC_STAGE": "probe-stage", **extra_env})
    return subprocess.Popen([sys.executable, "-m", "stages.probe", *args], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ran_warm(proc, first_line: str) -> bool:
    return f"pid {proc.pid} " not in first_line


def test_served_in_a_fork_with_the_commands_output_and_exit_code(project, server):
    sock, log = server
    proc = _start(project, sock, "exit", "3")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert _ran_warm(proc, out), out
    # as a cold command: its own argv, the per-stage env, run as __main__; the library came preloaded,
    # and the stage's own subprocesses would not be handed off again
    assert "argv ['exit', '3'] stage probe-stage shared kept socket None main __main__ preloaded True" in out
    assert "stages.probe (probe-stage): pid" in log.read_text()


def test_an_uncaught_exception_exits_1_with_its_traceback(project, server):
    proc = _start(project, server[0], "raise")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and _ran_warm(proc, out)
    assert "RuntimeError: broken stage" in out and "Traceback" in out


def test_a_caller_that_sends_nothing_does_not_stop_the_server(project, server):
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(server[0]))
    proc = _start(project, server[0], "exit", "0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and _ran_warm(proc, out), out


def test_another_environment_starts_cold(project, server):
    sock, log = server
    proc = _start(project, sock, "exit", "0", ALIGNFLOW_TEST_EXTRA="1")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert not _ran_warm(proc, out) and "preloaded False" in out
    assert "refused stages.probe: environment differs in ALIGNFLOW_TEST_EXTRA" in log.read_text()


def test_no_server_or_switched_off_starts_cold(project, server):
    for proc in (_start(project, project / "missing.sock", "exit", "4"),
                 _start(project, server[0], "exit", "4", **{SWITCH_ENV: "off"})):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 4 and not _ran_warm(proc, out), out


def test_sigterm_reaches_the_stage(project, server):
    proc = _start(project, server[0], "wait")
    assert _ran_warm(proc, proc.stdout.readline())
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert "got SIGTERM" in out and proc.returncode == 143


def test_a_killed_command_stops_its_stage(project, server, tmp_path):
    mark = tmp_path / "stopped.txt"
    proc = _start(project, server[0], "mark", str(mark))
    assert _ran_warm(proc, proc.stdout.readline())
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.time() + 20
    while not (mark.exists() and mark.read_text()) and time.time() < deadline:  # created, then written
        time.sleep(0.05)
    assert mark.read_text() == "stopped"


def test_only_python_dash_m_stages_commands_are_handed_off():
    assert stage_module(["python", "-m", "stages.base_lm", "--out", "x"]) == ("stages.base_lm", ["--out", "x"])
    assert stage_module(["python", "-X", "importtime", "-m", "stages.base_lm"]) is None
    assert stage_module(["python", "-m", "alignflow.external_inputs"]) is None
    assert stage_module(["python", "-c", "import stages"]) is None


def test_environment_compared_outside_the_per_stage_keys():
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    assert env_difference(base, {**base, "DVC_STAGE": "x", "ALIGNFLOW_PARENT_RUN_ID": "r", "PWD": "/w"}) == []
    assert env_difference(base, {**base, "OMP_NUM_THREADS": "2"}) == ["OMP_NUM_THREADS"]
    assert env_difference(base, {"PATH": "/bin"}) == ["OMP_NUM_THREADS"]


def test_not_started_for_a_few_stages_or_when_switched_off(tmp_path, monkeypatch):
    with warm_server.running(tmp_path, dict(os.environ), warm_server.START_MIN_STAGES - 1) as path:
        assert path is None
    monkeypatch.setenv(SWITCH_ENV, "off")
    with warm_server.running(tmp_path, dict(os.environ), 50) as path:
        assert path is None and SOCKET_ENV not in os.environ


def test_stage_environment_keeps_what_the_imports_set(monkeypatch):
    monkeypatch.setattr(warm_server, "_ENV_BEFORE_IMPORTS", {"A": "1", "GONE": "x"})
    monkeypatch.setattr(os, "environ", {"A": "1", "SET_BY_IMPORT": "y"})
    env = warm_server.stage_environment({"A": "1", "GONE": "x", "DVC_STAGE": "s", SOCKET_ENV: "/s"})
    assert env == {"A": "1", "SET_BY_IMPORT": "y", "DVC_STAGE": "s"}
