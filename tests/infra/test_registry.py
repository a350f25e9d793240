"""Registry aliases: every version is a candidate; champion needs a passed gate and no regression."""
from __future__ import annotations

import json

import pytest

from alignflow import registry
from alignflow.errors import AlignflowError

REGISTER = {"name": "policy-x", "artifact": "model", "metrics": "out/metrics.json"}


def _publish(root, value, passed, higher=True):
    import mlflow

    (root / "out").mkdir(exist_ok=True)
    (root / "out/metrics.json").write_text(json.dumps(
        {"gate": {"passed": passed, "metric": "score", "value": value, "higher_is_better": higher}}))
    (root / "model").mkdir(exist_ok=True)
    (root / "model/weights.txt").write_text(str(value))
    name = "registry-test"
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(
        name, artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(root / "model"), "model")
    return registry.publish(root, REGISTER, run.info.run_id, "stage_x", {"dvc.out.out": "abc"})


def test_aliases_move_only_on_passed_gate_without_regression(tmp_path, tracking):
    first = _publish(tmp_path, 0.5, passed=True)
    assert first.champion and first.version == "1"
    failed = _publish(tmp_path, 0.9, passed=False)
    assert not failed.champion and "gate failed" in failed.reason
    worse = _publish(tmp_path, 0.4, passed=True)
    assert not worse.champion and "worse than champion v1" in worse.reason
    better = _publish(tmp_path, 0.7, passed=True)
    assert better.champion
    assert registry.resolve("policy-x@champion").version in (4, "4")
    assert registry.resolve("policy-x@candidate").version in (4, "4")
    rows = registry.show("policy-x")
    assert [r["version"] for r in rows] == [1, 2, 3, 4]
    assert rows[3]["aliases"] == ["candidate", "champion"]
    path = registry.local_path("policy-x@champion")
    assert open(f"{path}/weights.txt").read() == "0.7"


def test_lower_is_better_gates(tmp_path, tracking):
    assert _publish(tmp_path, 10.0, passed=True, higher=False).champion
    assert not _publish(tmp_path, 12.0, passed=True, higher=False).champion
    assert _publish(tmp_path, 9.0, passed=True, higher=False).champion


def test_bad_references_are_clear(tmp_path, tracking):
    with pytest.raises(AlignflowError, match="expected NAME@ALIAS"):
        registry.resolve("policy-x")
    with pytest.raises(AlignflowError, match="no model version for nothing@champion"):
        registry.resolve("nothing@champion")
    with pytest.raises(AlignflowError, match="no registered model named 'nothing'"):
        registry.show("nothing")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/metrics.json").write_text("{}")
    with pytest.raises(AlignflowError, match="no 'gate' block"):
        registry.publish(tmp_path, REGISTER, "run", "stage_x", {})
