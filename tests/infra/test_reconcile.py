"""registry.reconcile_stage: every committed output of a registered stage has exactly one registry version.

A fake workspace holds what DVC would have committed (dvc.lock's output md5, the model folder and
metrics.json); one MLflow store serves the module and each test publishes under its own name.
"""
from __future__ import annotations

import itertools
import json

import pytest
import yaml

from alignflow import registry

from alignflow.runtime import gates
from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.stage_graph import StageInfo

_NAMES = itertools.count(1)
SMOKE = gates.Provenance("smoke", gates.eval_set("data/eval.jsonl", "abc", 24))


@pytest.fixture()
def info(module_store, monkeypatch):
    """A registered stage `stage_x` publishing its own model name; MLFLOW_TRACKING_URI points at the store."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    monkeypatch.setenv("ALIGNFLOW_EXPERIMENT", f"reconcile-{next(_NAMES)}")
    register = {"name": f"model-{next(_NAMES)}", "artifact": "model", "metrics": "models/x/metrics.json"}
    return StageInfo(name="stage_x", cmd="python -m stages.x", deps=(), outs=("models/x",), params=(),
                     meta={"register": register})


def _commit(root, md5: str, value: float = 0.7) -> None:
    """What DVC leaves after committing stage_x: the folder and its md5 in dvc.lock."""
    (root / "models/x/model").mkdir(parents=True, exist_ok=True)
    (root / "models/x/model/weights.txt").write_text(md5)
    (root / "models/x/metrics.json").write_text(json.dumps(
        {"gate": gates.interval_gate("score", value, 0.6, 0.5, SMOKE, "score vs chance")}))
    (root / "dvc.lock").write_text(yaml.safe_dump(
        {"schema": "2.0", "stages": {"stage_x": {"cmd": "python -m stages.x", "outs": [
            {"path": "models/x", "md5": md5, "size": 1, "nfiles": 2}]}}}))


def _versions(name):
    from mlflow import MlflowClient

    return sorted(MlflowClient().search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def test_restored_output_without_a_version_is_published_once(tmp_path, info):
    """No version carries the md5: a reconcile run logs the committed folder and registers it, once.

    Breaks if reconcile publishes only for executed stages, or publishes again on every call.
    """
    import mlflow
    from mlflow import MlflowClient

    _commit(tmp_path, "aaa111.dir")
    parent = MlflowClient().create_run(mlflow.create_experiment(f"parent-{info.registry['name']}")).info.run_id
    pub = registry.reconcile_stage(tmp_path, info, None, parent)
    assert pub is not None and pub.version == "1" and pub.champion
    version = registry.resolve(f"{info.registry['name']}@candidate")
    assert version.tags["dvc.out.models/x"] == "aaa111.dir" and version.tags["gate.profile"] == "smoke"
    run = MlflowClient().get_run(version.run_id)
    assert run.data.tags["alignflow.kind"] == "reconcile" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "FINISHED" and run.data.tags["alignflow.stage"] == "stage_x"
    path = registry.local_path(f"{info.registry['name']}@candidate")
    assert open(f"{path}/weights.txt").read() == "aaa111.dir"
    assert registry.reconcile_stage(tmp_path, info, None, parent) is None
    assert len(_versions(info.registry["name"])) == 1


def test_executed_stage_publishes_from_its_own_run(tmp_path, info):
    """With the stage's run id, the version points at that run: no reconcile run is opened."""
    import mlflow

    _commit(tmp_path, "bbb222.dir")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "models/x/model"), "model")
    pub = registry.reconcile_stage(tmp_path, info, run.info.run_id)
    assert pub is not None and _versions(info.registry["name"])[0].run_id == run.info.run_id
    assert registry.reconcile_stage(tmp_path, info, run.info.run_id) is None


def test_candidate_follows_the_workspace_back_to_an_earlier_output(tmp_path, info):
    """After a revert DVC restores older outputs: no new version, and `candidate` names the one held.

    Breaks if `candidate` stays on a version the workspace no longer holds.
    """
    name = info.registry["name"]
    _commit(tmp_path, "ccc333.dir")
    assert registry.reconcile_stage(tmp_path, info, None).version == "1"
    _commit(tmp_path, "ddd444.dir", value=0.8)
    assert registry.reconcile_stage(tmp_path, info, None).version == "2"
    _commit(tmp_path, "ccc333.dir")
    assert registry.reconcile_stage(tmp_path, info, None) is None
    assert str(registry.resolve(f"{name}@candidate").version) == "1"
    assert str(registry.resolve(f"{name}@champion").version) == "2"
    assert len(_versions(name)) == 2


def test_a_publish_failure_raises_and_the_next_reconcile_publishes(tmp_path, info, monkeypatch):
    """A registry error propagates (the task fails and is retried); the retry's reconcile publishes.

    Breaks if reconcile swallows the error, or if a failed attempt leaves a version that blocks the retry.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _commit(tmp_path, "eee555.dir")

    def refuse(*args, **kwargs):
        raise MlflowException("registry unavailable")

    with monkeypatch.context() as patch, pytest.raises(MlflowException, match="registry unavailable"):
        patch.setattr(MlflowClient, "create_model_version", refuse)
        registry.reconcile_stage(tmp_path, info, None)
    pub = registry.reconcile_stage(tmp_path, info, None)
    assert pub is not None and pub.version == "1" and pub.champion


def test_a_publish_cut_short_after_the_version_is_finished_as_decided(tmp_path, info, monkeypatch):
    """The version exists but its aliases never moved: reconcile moves them instead of skipping it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = info.registry["name"]
    _commit(tmp_path, "fff666.dir")

    def refuse(*args, **kwargs):
        raise MlflowException("connection reset")

    with monkeypatch.context() as patch, pytest.raises(MlflowException, match="connection reset"):
        patch.setattr(MlflowClient, "set_registered_model_alias", refuse)
        registry.reconcile_stage(tmp_path, info, None)
    pub = registry.reconcile_stage(tmp_path, info, None)
    assert pub is not None and pub.version == "1" and pub.champion and pub.reason == "gate passed; first champion"
    assert str(registry.resolve(f"{name}@champion").version) == "1"
    assert len(_versions(name)) == 1 and registry.reconcile_stage(tmp_path, info, None) is None


def test_nothing_to_reconcile(tmp_path, info):
    """No `meta.register`, or no committed output yet: nothing is published; a missing folder is an error."""
    plain = StageInfo(name="stage_x", cmd="", deps=(), outs=("models/x",), params=())
    assert registry.reconcile_stage(tmp_path, plain, None) is None
    assert registry.reconcile_stage(tmp_path, info, None) is None  # no dvc.lock
    _commit(tmp_path, "ggg777.dir")
    (tmp_path / "models/x/model/weights.txt").unlink()
    (tmp_path / "models/x/model").rmdir()
    with pytest.raises(AlignflowError, match="models/x/model: missing"):
        registry.reconcile_stage(tmp_path, info, None)
