"""The smoke DAG run once per session and shared: `test_pipeline_flow` drives it further, and
`test_reproducible_outputs` compares its first `dvc.lock` with a second clone's.

The second clone's run starts in the background when the first one starts, so the two runs share the
machine's cores instead of queueing (the suite pays for about one smoke run of wall time, not two).
The smoke profile's time budgets are far above what its stages need, so sharing the cores cannot cut
a stage short.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.project import make_project, project_env, run_flow


@dataclass(frozen=True)
class SmokeRun:
    root: Path
    env: dict
    outcomes: dict
    first_lock: str  # dvc.lock right after the first run, before any test changes the project


class BackgroundRun:
    """`alignflow run --profile smoke` in a fresh clone, running while other tests go on."""

    def __init__(self, tmp_path_factory, name: str):
        self.root = make_project(tmp_path_factory.mktemp(name) / "alignflow")
        self.env = project_env(tmp_path_factory.mktemp(f"{name}-home"))
        self.summary = self.root.parent / "summary.json"
        self.log = open(self.root.parent / "run.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "alignflow.cli", "run", "--profile", "smoke",
                                      "--summary-json", str(self.summary)], cwd=self.root, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def result(self) -> SmokeRun:
        rc = self.proc.wait(timeout=1800)
        self.log.close()
        assert rc == 0, (self.root.parent / "run.log").read_text()[-6000:]
        outcomes = {row["stage"]: row for row in json.loads(self.summary.read_text())}
        return SmokeRun(self.root, self.env, outcomes, (self.root / "dvc.lock").read_text(encoding="utf-8"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def smoke_run(tmp_path_factory, name: str) -> SmokeRun:
    """A fresh clone of this checkout with the smoke DAG run once through `alignflow run`."""
    root = make_project(tmp_path_factory.mktemp(name) / "alignflow")
    env = project_env(tmp_path_factory.mktemp(f"{name}-home"))
    proc, outcomes = run_flow(root, env, "--profile", "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return SmokeRun(root, env, outcomes, (root / "dvc.lock").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def second_clone(tmp_path_factory):
    """The second clone's smoke run, started at once (see the module docstring)."""
    run = BackgroundRun(tmp_path_factory, "second-clone")
    yield run
    run.stop()


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory, second_clone) -> SmokeRun:
    return smoke_run(tmp_path_factory, "project")
