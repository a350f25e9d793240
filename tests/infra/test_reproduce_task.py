"""The reproduce task and the registry on a real one-stage DVC workspace; the retry predicate.

The stage really runs (a subprocess through DVC, with stage_main and an MLflow run), and DVC's
run-cache really restores outputs; only Prefect's run logger and table artifact are replaced, so the
task body runs without a Prefect server.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import yaml

from alignflow import registry
from alignflow.runtime.stage_graph import load_stage_graph
from tests.project import REPO

STAGE = '''
from alignflow.runtime.gates import Provenance, interval_gate
from alignflow.runtime.stage import stage_main


def run(ctx):
    value = float(ctx.block("x")["value"])
    out = ctx.output("out")
    (out / "model").mkdir()
    (out / "model" / "weights.txt").write_text(str(value))
    gate = interval_gate("score", value, 0.6, 0.5, Provenance(ctx.profile, "eval n=1", False), "score")
    ctx.write_metrics(out, {"score": value, "gate": gate})
    ctx.log_artifacts_on_success("models/x/model", "model")


stage_main("stage_x", run, blocks=("x",), outputs=("out",))
'''
NAME = "model-x"


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A git + DVC workspace with one registered stage, its own MLflow store, and Prefect's UI calls replaced by no-ops."""
    import mlflow

    import tasks.reproduce as task_module

    root = tmp_path / "ws"
    root.mkdir()
    (root / "stage_x.py").write_text(STAGE)
    (root / "params.yaml").write_text(yaml.safe_dump({"profile": "smoke", "seed": 0, "x": {"value": 0.7}}))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"stage_x": {
        "cmd": "python stage_x.py --out models/x", "deps": ["stage_x.py"], "params": ["x"], "outs": ["models/x"],
        "meta": {"register": {"name": NAME, "artifact": "model", "metrics": "models/x/metrics.json"}}}}}))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    monkeypatch.setattr(task_module, "get_run_logger", lambda: logging.getLogger("test-reproduce"))
    monkeypatch.setattr(task_module, "create_table_artifact", lambda **kwargs: None)
    monkeypatch.chdir(root)  # DVC addresses stages relative to the working directory, as under `alignflow run`
    yield root
    mlflow.set_tracking_uri(previous)


def _set_value(root, value: float) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"profile": "smoke", "seed": 0, "x": {"value": value}}))


def _reproduce(root) -> dict:
    from tasks.reproduce import reproduce_stage

    info = load_stage_graph(root).stages["stage_x"]
    return reproduce_stage.fn(str(root), info, None, None)


def _versions():
    from mlflow import MlflowClient

    return sorted(MlflowClient().search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))


def test_registry_follows_executed_restored_and_failed_publishes(workspace, monkeypatch):
    """Each committed output gets one version whatever the stage's status; a publish failure fails the task.

    Breaks if the task publishes only when the stage executed (the restored output would have no
    version and `candidate` would name one the workspace does not hold), or if it swallows a
    publish error.
    """
    root = workspace

    def refuse(*args, **kwargs):
        raise RuntimeError("registry unavailable")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="registry unavailable"):
        patch.setattr(registry, "publish", refuse)
        _reproduce(root)  # the stage ran and DVC committed it; publishing failed
    assert json.loads((root / "models/x/metrics.json").read_text())["score"] == 0.7 and _versions() == []

    _set_value(root, 0.8)
    executed = _reproduce(root)
    assert executed["status"] == "executed" and executed["published"]["version"] == "1"
    assert _versions()[0].run_id == executed["run_id"]

    _set_value(root, 0.7)  # back: DVC restores the first output from its run-cache
    restored = _reproduce(root)
    assert restored["status"] == "restored" and restored["run_id"] is None
    assert restored["published"]["version"] == "2"
    candidate = registry.resolve(f"{NAME}@candidate")
    assert str(candidate.version) == "2" and open(f"{registry.local_path(f'{NAME}@candidate')}/weights.txt").read() == "0.7"

    again = _reproduce(root)
    assert again["status"] == "up-to-date" and again["published"] is None and len(_versions()) == 2

    _set_value(root, 0.8)  # restored again, already registered: candidate moves back, nothing new
    assert _reproduce(root)["published"] is None
    assert str(registry.resolve(f"{NAME}@candidate").version) == "1" and len(_versions()) == 2


class _State:
    """The part of a Prefect state the retry predicate uses: result() raises the task's exception."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def result(self):
        raise self.exc


def _dvc_failure(status: int) -> Exception:
    """How DVC reports a failed stage command: ReproductionError caused by StageCmdFailedError."""
    from dvc.exceptions import ReproductionError
    from dvc.stage.exceptions import StageCmdFailedError

    try:
        try:
            raise StageCmdFailedError("python -m stages.prefs", status)
        except StageCmdFailedError as cause:
            raise ReproductionError("prefs") from cause
    except ReproductionError as exc:
        return exc


@pytest.mark.parametrize("exc, retry", [
    (_dvc_failure(2), False),            # bad input: exactly exit 2, found down the cause chain
    (_dvc_failure(1), True),             # a crash
    (_dvc_failure(-9), True),            # killed
    (_dvc_failure(23), True),            # "exited with 23" contains "exited with 2"
    (_dvc_failure(255), True),
    (RuntimeError("registry unavailable"), True),  # a publish failure
])
def test_retry_only_what_is_not_bad_input(exc, retry):
    """Exit status 2 anywhere in the cause chain is never retried; anything else is.

    Breaks if the predicate matches on a substring ('exited with 2' in 'exited with 23') or stops
    at the outer ReproductionError.
    """
    from tasks.reproduce import _retry_unless_bad_input

    assert _retry_unless_bad_input(None, None, _State(exc)) is retry


def test_an_interrupted_run_or_a_reported_bad_input_is_never_retried(monkeypatch):
    """Breaks if SIGTERM / Ctrl-C to `alignflow run` led to a second attempt of the stage it stopped, or if a bad-input
    state the task returned (the stage's own line, no exception) were retried."""
    from prefect.states import Failed

    from alignflow import interrupt
    from tasks.reproduce import BAD_INPUT_PREFIX, _retry_unless_bad_input

    assert _retry_unless_bad_input(None, None, Failed(message=f"{BAD_INPUT_PREFIX}stage 'prefs': f.jsonl: line 2")) \
        is False
    assert _retry_unless_bad_input(None, None, _State(_dvc_failure(-15))) is True
    monkeypatch.setitem(interrupt._state, "signal", 15)
    assert _retry_unless_bad_input(None, None, _State(_dvc_failure(-15))) is False


def test_each_comparison_page_becomes_a_markdown_artifact_naming_its_run(tmp_path, monkeypatch):
    """Fails if a stage's comparison.md did not reach Prefect, two pages shared a key, or the run went unnamed."""
    from alignflow.runtime.stage_graph import StageInfo
    from tasks import reproduce as task_module

    made = []
    monkeypatch.setattr(task_module, "create_markdown_artifact", lambda **kwargs: made.append(kwargs))
    (tmp_path / "models/cmp/sub").mkdir(parents=True)
    (tmp_path / "models/cmp/comparison.md").write_text("| a | b |\n")
    (tmp_path / "models/cmp/sub/comparison.md").write_text("# nested\n")
    (tmp_path / "models/cmp/metrics.json").write_text("{}")
    info = StageInfo(name="st_train@st_x", cmd="true", deps=(), outs=("models/cmp", "models/missing"), params=())
    keys = task_module.publish_reports(tmp_path, info, "abc123")
    assert keys == ["st-train-st-x-report", "st-train-st-x-sub"]
    assert [m["key"] for m in made] == keys
    assert made[0]["markdown"].startswith("| a | b |") and "MLflow run `abc123`" in made[0]["markdown"]
    assert "models/cmp/sub/comparison.md" in made[1]["description"]
