"""One alignflow run per workspace: a second is refused at once (or waits), a dead holder's lock is taken over."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from alignflow.workspace_lock import BUSY_EXIT, LOCK_FILE, WorkspaceBusy, workspace_lock
from tests.project import REPO, cli, make_project, project_env

HOLD = """
import sys, time
from pathlib import Path
from alignflow.workspace_lock import workspace_lock
with workspace_lock(Path(sys.argv[1]), "alignflow run --profile smoke"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(root, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    """Breaks if the lock were only taken in-process (threading) or not at all."""
    proc = _holder(tmp_path, 30)
    try:
        with pytest.raises(WorkspaceBusy) as err:
            with workspace_lock(tmp_path, "alignflow run"):
                pass
        assert f"pid {proc.pid}" in str(err.value) and "alignflow run --profile smoke" in str(err.value)
        assert err.value.exit_code == BUSY_EXIT
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    """Breaks if the lock were a pid file checked for existence (SIGKILL leaves the file behind)."""
    proc = _holder(tmp_path, 30)
    proc.kill()
    proc.wait()
    assert (tmp_path / LOCK_FILE).read_text().strip()  # the dead holder's record is still there
    with workspace_lock(tmp_path, "alignflow run"):
        assert '"command": "alignflow run"' in (tmp_path / LOCK_FILE).read_text()


def test_wait_blocks_until_the_holder_finishes(tmp_path):
    """Breaks if --wait were ignored (refusal) or did not wait (overlap)."""
    proc = _holder(tmp_path, 2)
    started = time.monotonic()
    with workspace_lock(tmp_path, "alignflow run", wait=True, poll_s=0.1):
        waited = time.monotonic() - started
        assert proc.wait(timeout=10) == 0  # the first holder finished normally: no overlap, no kill
    assert waited > 1.0  # the holder kept it for 2 s after saying "held"


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    """The CLI holds the lock and then runs the flow, which takes it again; breaks if that deadlocks or refuses."""
    with workspace_lock(tmp_path, "cli"):
        with workspace_lock(tmp_path, "flow"):
            pass
        with workspace_lock(tmp_path, "flow again"):
            pass


def test_a_second_alignflow_run_is_refused_and_params_yaml_untouched(tmp_path):
    """The issue's drill: breaks if `alignflow run --profile default` rendered params.yaml before the lock."""
    root = make_project(tmp_path / "p")
    env = project_env(tmp_path / "home")
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("profile: default",
                                                                                 "profile: default  # hand edit"))
    before = (root / "params.yaml").read_bytes()
    holder = _holder(root, 60)
    try:
        started = time.monotonic()
        second = cli(root, env, "run", "--profile", "smoke", "--stages", "prefs")
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == BUSY_EXIT, second.stderr[-2000:]
    assert "is busy" in second.stderr and f"pid {holder.pid}" in second.stderr
    assert (root / "params.yaml").read_bytes() == before
    assert elapsed < 20  # refused before any Prefect server or DVC work
