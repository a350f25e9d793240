"""A toy DVC project for the scheduler's tests: two independent branches and a join, stages in ~0.5 s.

    left.txt  -> left1  -> left2  \\
                                    join
    right.txt -> right1 -> right2 /

Every stage runs one script through the real stage runtime (`stage_main`: staged outputs, the run
record, an MLflow run unless ALIGNFLOW_TRACKING=off). A stage whose input holds the word `fail`
raises (a traceback, exit 1); one whose input holds `badinput` raises ValueError (exit 2).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.project import REPO

SCRIPT = '''
import os
import time

from alignflow.runtime.stage import stage_main


def run(ctx):
    text = "".join(path.read_text() for path in ctx.inputs("src"))
    print(f"{ctx.name}: read {len(text)} characters; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    if "badinput" in text:
        raise ValueError(f"{ctx.name}: input says badinput")
    if "fail" in text:
        raise RuntimeError(f"{ctx.name} was told to fail")
    time.sleep(0.3)  # long enough for the other branch's stage to overlap
    out = ctx.output("out")
    (out / "value.txt").write_text(f"{ctx.name}({text})")


stage_main("toy", run, inputs=("src*",), outputs=("out",))
'''
STAGES = {
    "left1": ["left.txt"], "left2": ["out/left1/value.txt"],
    "right1": ["right.txt"], "right2": ["out/right1/value.txt"],
    "join": ["out/left2/value.txt", "out/right2/value.txt"],
}
LEFT, RIGHT = {"left1", "left2"}, {"right1", "right2"}


def make_toy(root: Path) -> Path:
    """The toy workspace at `root`: git + DVC initialised, inputs `left.txt` and `right.txt`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "toy.py").write_text(SCRIPT)
    stages = {name: {"cmd": f"python toy.py --stage {name} --src {' '.join(deps)} --out out/{name}",
                     "deps": ["toy.py", *deps], "outs": [f"out/{name}"]} for name, deps in STAGES.items()}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump({"profile": "toy", "seed": 0}))
    write_inputs(root, "left 0", "right 0")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    return root


def write_inputs(root: Path, left: str, right: str) -> None:
    (root / "left.txt").write_text(left + "\n")
    (root / "right.txt").write_text(right + "\n")


def toy_env(base: dict, tmp: Path, tracking: bool = True) -> dict[str, str]:
    """What a stage subprocess needs: this checkout's code first, this interpreter's `python`, a test MLflow store."""
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), base.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    env["ALIGNFLOW_TRACKING"] = "on" if tracking else "off"
    return env


def lock_stages(root: Path) -> dict:
    """dvc.lock's stage entries (what DVC committed), {} before any run."""
    path = root / "dvc.lock"
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.is_file() else {}
