"""Registry aliases: every version is a candidate; champion needs a passed gate and no regression.

One MLflow store serves the module (creating a SQLite store costs seconds); each test publishes
under its own model name.
"""
from __future__ import annotations

import itertools
import json

import pytest

from alignflow import registry

from alignflow.runtime import gates
from alignflow.runtime.errors import AlignflowError

_NAMES = itertools.count(1)
SMOKE = gates.Provenance("smoke", gates.eval_set("data/eval.jsonl", "abc", 24))


def _gate(value, passed, higher=True, provenance=SMOKE):
    """A gate that passes or fails as asked, with `value` as the compared number."""
    if higher:
        return gates.interval_gate("score", value, 0.6 if passed else 0.4, 0.5, provenance, "score vs chance")
    return gates.upper_bound_gate("score", value, value if passed else value - 1, provenance)


@pytest.fixture()
def tracking(module_store, monkeypatch):
    """The module's store, with MLFLOW_TRACKING_URI pointing at it (as in a stage's environment)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())


@pytest.fixture()
def name(tracking):
    """A registered-model name no other test of the module uses."""
    return f"policy-{next(_NAMES)}"


def _register(name):
    return {"name": name, "artifact": "model", "metrics": "out/metrics.json"}


def _publish(root, name, value, passed, higher=True, gate=None):
    import mlflow

    (root / "out").mkdir(exist_ok=True)
    (root / "out/metrics.json").write_text(json.dumps({"gate": gate or _gate(value, passed, higher)}))
    (root / "model").mkdir(exist_ok=True)
    (root / "model/weights.txt").write_text(str(value))
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(
        name, artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(root / "model"), "model")
    return registry.publish(root, _register(name), run.info.run_id, "stage_x", {"dvc.out.out": "abc"})


def test_aliases_move_only_on_passed_gate_without_regression(tmp_path, name):
    first = _publish(tmp_path, name, 0.5, passed=True)
    assert first.champion and first.version == "1"
    failed = _publish(tmp_path, name, 0.9, passed=False)
    assert not failed.champion and "gate failed" in failed.reason
    worse = _publish(tmp_path, name, 0.4, passed=True)
    assert not worse.champion and "worse than champion v1" in worse.reason
    better = _publish(tmp_path, name, 0.7, passed=True)
    assert better.champion
    assert registry.resolve(f"{name}@champion").version in (4, "4")
    assert registry.resolve(f"{name}@candidate").version in (4, "4")
    rows = registry.show(name)
    assert [r["version"] for r in rows] == [1, 2, 3, 4]
    assert rows[3]["aliases"] == ["candidate", "champion"]
    path = registry.local_path(f"{name}@champion")
    assert open(f"{path}/weights.txt").read() == "0.7"


def test_lower_is_better_gates(tmp_path, name):
    assert _publish(tmp_path, name, 10.0, passed=True, higher=False).champion
    assert not _publish(tmp_path, name, 12.0, passed=True, higher=False).champion
    assert _publish(tmp_path, name, 9.0, passed=True, higher=False).champion


def test_bad_references_are_clear(tmp_path, name):
    with pytest.raises(AlignflowError, match="expected NAME@ALIAS"):
        registry.resolve("policy-x")
    with pytest.raises(AlignflowError, match="no model version for nothing@champion"):
        registry.resolve("nothing@champion")
    with pytest.raises(AlignflowError, match="no registered model named 'nothing'"):
        registry.show("nothing")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/metrics.json").write_text("{}")
    with pytest.raises(AlignflowError, match="no 'gate' block"):
        registry.publish(tmp_path, _register(name), "run", "stage_x", {})


def test_a_champion_from_another_profile_is_not_compared_nor_displaced(tmp_path, name):
    """The profile/eval set travel as version tags; a better number from `default` leaves smoke's champion."""
    assert _publish(tmp_path, name, 0.5, passed=True).champion
    default = gates.Provenance("default", SMOKE.eval_set)
    other = _publish(tmp_path, name, 0.9, passed=True, gate=_gate(0.9, True, provenance=default))
    assert not other.champion and "not comparable" in other.reason and "'smoke' vs 'default'" in other.reason
    assert str(registry.resolve(f"{name}@champion").version) == "1"
    tags = registry.resolve(f"{name}@candidate").tags
    assert tags["gate.profile"] == "default" and tags["gate.eval_set"] == SMOKE.eval_set


def test_a_tie_read_back_from_tags_takes_champion(tmp_path, name):
    """The incumbent's value must read back exactly from its tag (0.1 + 0.2 is no short decimal)."""
    value = 0.1 + 0.2
    assert _publish(tmp_path, name, value, passed=True).champion
    tie = _publish(tmp_path, name, value, passed=True)
    assert tie.champion and "ties champion v1" in tie.reason


def test_time_budget_veto_and_legacy_gates_through_publish(tmp_path, name):
    """publish recomputes the gate: a cut model, even one whose older gate says passed, is only a candidate."""
    cut = gates.Provenance("smoke", SMOKE.eval_set, stopped_by_time_budget=True)
    vetoed = _publish(tmp_path, name, 0.9, passed=True, gate=_gate(0.9, True, provenance=cut))
    assert not vetoed.champion and gates.TIME_BUDGET_VETO in vetoed.reason
    (tmp_path / "out/metrics.json").write_text(json.dumps(
        {"stopped_by_time_budget": True, "gate": {"passed": True, "metric": "score", "value": 0.9}}))
    legacy = registry.publish(tmp_path, _register(name), registry.resolve(f"{name}@candidate").run_id, "stage_x", {})
    assert not legacy.champion and gates.TIME_BUDGET_VETO in legacy.reason
    with pytest.raises(AlignflowError, match=f"no model version for {name}@champion"):
        registry.resolve(f"{name}@champion")
