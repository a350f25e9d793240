"""The smoke DAG run once per session and shared: `test_pipeline_flow` drives it further, and
`test_reproducible_outputs` compares its first `dvc.lock` with a second clone's, so the integration
suite pays for two smoke runs, not three."""
from __future__ import annotations

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


def smoke_run(tmp_path_factory, name: str) -> SmokeRun:
    """A fresh clone of this checkout with the smoke DAG run once through `alignflow run`."""
    root = make_project(tmp_path_factory.mktemp(name) / "alignflow")
    env = project_env(tmp_path_factory.mktemp(f"{name}-home"))
    proc, outcomes = run_flow(root, env, "--profile", "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return SmokeRun(root, env, outcomes, (root / "dvc.lock").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> SmokeRun:
    return smoke_run(tmp_path_factory, "project")


@pytest.fixture(scope="session")
def make_smoke_run(tmp_path_factory):
    """`make_smoke_run(name)`: another fresh clone with its own smoke run."""
    return lambda name: smoke_run(tmp_path_factory, name)
