"""Stage runs record MLflow system metrics (issue 15 part 2), unless ALIGNFLOW_SYSTEM_METRICS is off."""
from __future__ import annotations

import pytest
import yaml

from alignflow.runtime import tracking


@pytest.mark.parametrize("value, on", [(None, True), ("on", True), ("off", False), ("0", False), ("False", False)])
def test_the_switch_reads_the_environment(monkeypatch, value, on):
    """On unless ALIGNFLOW_SYSTEM_METRICS says off/0/false (any case)."""
    if value is None:
        monkeypatch.delenv(tracking.SYSTEM_METRICS_ENV, raising=False)
    else:
        monkeypatch.setenv(tracking.SYSTEM_METRICS_ENV, value)
    assert tracking.system_metrics_on() is on

def test_a_stage_run_records_system_metrics_while_it_runs(tmp_path, monkeypatch, tracking):
    """A stage run carries MLflow's `system/*` metrics (CPU, memory), sampled while the stage runs.

    Fails if stage runs are started without system metrics (or only get one sample at the end).
    """
    import time

    import mlflow

    from alignflow.runtime.stage import stage_main

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "profile": "unit", "toy": {}}))
    monkeypatch.setenv("ALIGNFLOW_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")

    def run(ctx):
        (ctx.output("out") / "a.txt").write_text("x")
        time.sleep(1.5)

    stage_main("toy", run, outputs=("out",), argv=["--out", "out/toy"])
    client = mlflow.MlflowClient()
    [run_info] = client.search_runs([client.get_experiment_by_name("alignflow").experiment_id])
    system = [k for k in run_info.data.metrics if k.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system, system
    assert len(client.get_metric_history(run_info.info.run_id, "system/system_memory_usage_megabytes")) >= 2
