"""A stage that fails leaves no output behind, exits 2 on bad input, and marks its MLflow run FAILED."""
from __future__ import annotations

import pytest
import yaml

from alignflow.stage import stage_main


def _project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 3, "profile": "unit", "toy": {"n": 2}}))
    monkeypatch.setenv("ALIGNFLOW_ROOT", str(tmp_path))
    return tmp_path


def _runs(stage):
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("alignflow")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`alignflow.stage` = '{stage}'")


def test_successful_stage_commits_output_and_logs(tmp_path, monkeypatch, tracking):
    root = _project(tmp_path, monkeypatch)

    def run(ctx):
        assert ctx.seed == 3 and ctx.block("toy") == {"n": 2}
        out = ctx.output("out/toy")
        (out / "a.txt").write_text("x")
        ctx.write_metrics(out, {"score": 0.5, "nested": {"k": 1}})

    stage_main("toy", run)
    assert (root / "out/toy/a.txt").read_text() == "x"
    [run_info] = _runs("toy")
    assert run_info.info.status == "FINISHED"
    assert run_info.data.metrics["nested.k"] == 1.0 and run_info.data.params["toy.n"] == "2"


def test_failed_stage_keeps_previous_output_and_exits_2_on_bad_input(tmp_path, monkeypatch, tracking, capsys):
    root = _project(tmp_path, monkeypatch)
    (root / "out/toy").mkdir(parents=True)
    (root / "out/toy/old.txt").write_text("previous")

    def run(ctx):
        out = ctx.output("out/toy")
        (out / "half.txt").write_text("half")
        raise ValueError("data/x.jsonl: line 3: field 'chosen': empty")

    with pytest.raises(SystemExit) as exit_info:
        stage_main("toy", run)
    assert exit_info.value.code == 2
    assert "line 3: field 'chosen'" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "out").iterdir()) == ["toy"]
    assert [p.name for p in (root / "out/toy").iterdir()] == ["old.txt"]
    [run_info] = _runs("toy")
    assert run_info.info.status == "FAILED" and "line 3" in run_info.data.tags["alignflow.error"]


def test_crash_exits_1(tmp_path, monkeypatch, tracking):
    _project(tmp_path, monkeypatch)

    def run(ctx):
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as exit_info:
        stage_main("toy", run)
    assert exit_info.value.code == 1


def test_metric_names_mlflow_rejects_are_made_safe():
    from alignflow.stage import mlflow_metric_name

    assert mlflow_metric_name("ms_per_utt/nast_greedy@b1") == "ms_per_utt/nast_greedy_b1"
    assert mlflow_metric_name("test_id/acc_gold") == "test_id/acc_gold"
