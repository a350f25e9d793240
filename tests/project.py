"""Copying the project into a throw-away git repository, and running the CLI inside it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def project_files() -> list[str]:
    """Tracked and not-ignored files of this checkout (what a clone would hold, plus local edits)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    # dvc.lock records this checkout's own runs; a project under test starts without any.
    return [line for line in out.splitlines() if line and line != "dvc.lock" and (REPO / line).is_file()]


def make_project(dst: Path) -> Path:
    """A fresh git repo at `dst` holding the project, committed once."""
    for rel in project_files():
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    git = ["git", "-c", "user.name=alignflow-test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "project under test"], cwd=dst, check=True)
    return dst


def project_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment isolated from the developer's Prefect home and MLflow store."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_", "ALIGNFLOW_"))}
    env.update(PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    env.update(extra)
    return env


def cli(project: Path, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignflow.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_flow(project: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """`alignflow run ARGS` -> (process, {stage: outcome}); asserts nothing."""
    summary = project / ".." / f"summary-{os.getpid()}-{len(args)}.json"
    summary.unlink(missing_ok=True)
    proc = cli(project, env, "run", *args, "--summary-json", str(summary))
    outcomes = {}
    if summary.is_file():
        outcomes = {row["stage"]: row for row in json.loads(summary.read_text())}
        summary.unlink()
    return proc, outcomes


def run_stage(root: Path, name: str, fn, params: dict):
    """Run one stage function in-process on `root` the way `stage_main` does: outputs commit only on success."""
    import copy

    from alignflow.runtime.stage import StageContext

    ctx = StageContext(name, root, copy.deepcopy(params), None)
    try:
        fn(ctx)
    except BaseException:
        ctx._discard_outputs()
        raise
    ctx._commit_outputs()
    return ctx
