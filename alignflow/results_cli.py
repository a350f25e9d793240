"""`alignflow results save NAME`: record a run on the git branch `results/NAME`, for `dvc metrics diff`.

The dvc.lock policy: main carries code only. dvc.lock records one workspace's run (which machine,
which params profile), so main does not track it and every clone starts without one (it cannot be
git-ignored: DVC refuses to read an ignored dvc.lock). A run worth
keeping is saved as a commit on a results branch: the tracked files as they are in the workspace
(params.yaml rendered from its profile included) plus that dvc.lock, made with git plumbing so the
checkout, its index and HEAD stay as they are. DVC then reads any saved run's metrics and plots from
its cache (or a remote): `dvc metrics diff results/a results/b`, `dvc plots diff results/a results/b`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.paths import repo_root

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _git(root: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AlignflowError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def save_results(root: Path, name: str, message: str | None = None) -> dict:
    """Commit the workspace's tracked files and its dvc.lock onto `results/NAME`; returns what was made."""
    if not _NAME.match(name):
        raise AlignflowError(f"results name {name!r}: use letters, digits, '.', '_' or '-'")
    if not (root / "dvc.lock").is_file():
        raise AlignflowError(f"{root / 'dvc.lock'} does not exist: run `alignflow run` before saving its results")
    branch = f"refs/heads/results/{name}"
    head = _git(root, "rev-parse", "HEAD")
    previous = subprocess.run(["git", "rev-parse", "--verify", "-q", branch], cwd=root, capture_output=True,
                              text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(root, "read-tree", "HEAD", env=index)
        _git(root, "add", "-u", env=index)
        _git(root, "add", "-f", "dvc.lock", env=index)
        tree = _git(root, "write-tree", env=index)
    parents = ["-p", previous] if previous else []
    code_seen = bool(previous) and subprocess.run(["git", "merge-base", "--is-ancestor", head, previous],
                                                  cwd=root).returncode == 0
    if not code_seen:
        parents += ["-p", head]  # the code the run used joins the branch's history
    text = message or f"results {name}: dvc.lock of the run in {root.name}"
    commit = _git(root, "-c", "user.name=alignflow", "-c", "user.email=alignflow@localhost", "commit-tree", tree,
                  *parents, "-m", text)
    _git(root, "update-ref", branch, commit, *([previous] if previous else []))
    return {"branch": f"results/{name}", "commit": commit, "code_commit": head}


def _cmd_save(args: argparse.Namespace) -> int:
    saved = save_results(repo_root(), args.name, args.message)
    if args.json:
        print(json.dumps(saved))
    else:
        print(f"saved {saved['branch']} at {saved['commit'][:10]} (code {saved['code_commit'][:10]}); "
              f"compare with: dvc metrics diff results/OTHER {saved['branch']}")
    return 0


def add_results_parser(sub) -> None:
    res = sub.add_parser("results", help="save this workspace's run (its dvc.lock) on a results/NAME git branch")
    actions = res.add_subparsers(dest="action", required=True)
    save = actions.add_parser("save", help="commit the tracked files and dvc.lock onto results/NAME")
    save.add_argument("name")
    save.add_argument("-m", "--message")
    save.add_argument("--json", action="store_true")
    save.set_defaults(func=_cmd_save)
