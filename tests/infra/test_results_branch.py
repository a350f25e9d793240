"""`alignflow results save`: a run's dvc.lock onto results/NAME, leaving HEAD, index and checkout alone."""
from __future__ import annotations

import subprocess

import pytest

from alignflow.results_cli import save_results
from alignflow.runtime.errors import AlignflowError


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "code")
    return tmp_path


def test_save_commits_lock_and_workspace_params_without_moving_head(repo):
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "params.yaml").write_text("seed: 1\n")  # rendered by a profile, not committed
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    status = _git(repo, "status", "--porcelain")
    saved = save_results(repo, "run-a")
    assert saved["branch"] == "results/run-a" and saved["code_commit"] == head
    assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "status", "--porcelain") == status
    assert _git(repo, "show", "results/run-a:params.yaml") == "seed: 1"
    assert _git(repo, "show", "results/run-a:dvc.lock").startswith("schema")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {a: {}}\n")
    again = save_results(repo, "run-a", "second run")
    parents = _git(repo, "rev-list", "--parents", "-n", "1", again["commit"]).split()[1:]
    assert parents == [saved["commit"]]  # the branch keeps the history of saved runs
    assert _git(repo, "log", "-1", "--format=%s", "results/run-a") == "second run"


def test_save_refuses_without_a_lock_or_with_a_bad_name(repo):
    with pytest.raises(AlignflowError, match="does not exist"):
        save_results(repo, "x")
    (repo / "dvc.lock").write_text("stages: {}\n")
    with pytest.raises(AlignflowError, match="results name"):
        save_results(repo, "../main")
