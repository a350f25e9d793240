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


def cli(project: Path, env: dict, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
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


def stage_invocation(name: str, graph=None) -> tuple[dict, dict, dict]:
    """The stage's dvc.yaml command, split as stage_main would see it: (inputs, outputs, options).

    A `--key value...` whose values lie inside the stage's deps or outs is a path (an output when in
    outs); anything else is a stage option (`--publish` -> True). Tests run stages with exactly the
    paths dvc.yaml hands them.
    """
    import shlex

    from alignflow.code_deps import covered

    info = (graph or _repo_graph()).stages[name]
    tokens = shlex.split(info.cmd)
    tokens = tokens[tokens.index("-m") + 2:]
    inputs, outputs, options = {}, {}, {}
    i = 0
    while i < len(tokens):
        key = tokens[i][2:].replace("-", "_")
        values = []
        i += 1
        while i < len(tokens) and not tokens[i].startswith("--"):
            values.append(tokens[i])
            i += 1
        if values and all(covered(v, info.outs) for v in values):
            outputs[key] = values if len(values) > 1 else values[0]
        elif values and all(covered(v, info.deps) for v in values):
            inputs[key] = values if len(values) > 1 else values[0]
        else:
            options[key] = (values[0] if len(values) == 1 else values) if values else True
    return inputs, outputs, options


_GRAPH = []


def _repo_graph():
    from alignflow.runtime.stage_graph import load_stage_graph

    if not _GRAPH:
        _GRAPH.append(load_stage_graph(REPO))
    return _GRAPH[0]


def run_stage(root: Path, name: str, fn, params: dict, **overrides):
    """Run one stage function in-process on `root` the way `stage_main` does: outputs commit only on success.

    Paths and options come from the stage's dvc.yaml command (`stage_invocation`); `overrides`
    replace single paths or options by key.
    """
    import argparse
    import copy

    from alignflow.runtime.stage import StageContext, StagePaths

    inputs, outputs, options = stage_invocation(name)
    for key, value in overrides.items():
        table = inputs if key in inputs else outputs if key in outputs else options
        table[key] = value
    paths = StagePaths([k + ("*" if isinstance(v, list) else "") for k, v in inputs.items()],
                       [k + ("*" if isinstance(v, list) else "") for k, v in outputs.items()])
    paths.values = {**inputs, **outputs}
    args = argparse.Namespace(**{"stage": name, **options})  # a foreach command passes --stage itself
    ctx = StageContext(name, root, copy.deepcopy(params), None, args=args, paths=paths)
    try:
        fn(ctx)
    except BaseException:
        ctx._discard_outputs()
        raise
    ctx._commit_outputs()
    return ctx
