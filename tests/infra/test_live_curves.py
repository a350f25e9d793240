"""Training curves reach MLflow while a stage trains (`ctx.stream_history` as the loop's `on_log`), not at its end."""
from __future__ import annotations

import time

import torch
import yaml

from pipelines.training.loop import train


class _Slow(torch.nn.Module):
    """One weight; each loss call sleeps, so the steps of a run are spread over measurable time."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, batch):
        time.sleep(0.15)
        return ((self.w - batch.float().mean()) ** 2).mean(), {}


CFG = {"max_steps": 6, "batch_size": 2, "lr": 0.1, "log_every": 1, "eval_every": 3, "seed": 0}


def test_the_loop_hands_each_row_to_on_log_as_it_is_recorded():
    """Fails if `on_log` is not called, is called only after training, or misses the eval rows."""
    seen: list[tuple[int, float, set]] = []
    start = time.perf_counter()
    result = train(_Slow(), list(range(16)), lambda m, b: m.loss(b), CFG, eval_fn=lambda m: {"w": float(m.w)},
                   progress=False, on_log=lambda row: seen.append((row["step"], time.perf_counter(), set(row))))
    assert [s for s, _, k in seen if "train_loss" in k] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _, k in seen if "eval_w" in k] == [3, 6]
    first, last = seen[0][1] - start, seen[-1][1] - start
    assert last - first > 0.5, "rows came together at the end"
    assert len(result.history) == 6  # train and eval rows of one step merged, as before


def test_a_stage_streams_its_curve_to_mlflow_while_it_trains(tmp_path, monkeypatch, tracking):
    """The metric's timestamps follow the steps: step 1 is logged well before step 6. Fails if the curve is only
    logged after training (all six within a few milliseconds) or logged twice by the final `log_history`."""
    import mlflow

    from alignflow.runtime.stage import stage_main

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "profile": "unit", "toy": {}}))
    monkeypatch.setenv("ALIGNFLOW_ROOT", str(tmp_path))
    monkeypatch.setenv("ALIGNFLOW_SYSTEM_METRICS", "off")

    def run(ctx):
        result = train(_Slow(), list(range(16)), lambda m, b: m.loss(b), CFG, progress=False,
                       on_log=ctx.stream_history("train"))
        ctx.log_history(result.history, "train")
        (ctx.output("out") / "a.txt").write_text("x")

    stage_main("toy", run, outputs=("out",), argv=["--out", "out/toy"])
    client = mlflow.MlflowClient()
    [run_info] = client.search_runs([client.get_experiment_by_name("alignflow").experiment_id])
    history = sorted(client.get_metric_history(run_info.info.run_id, "train.train_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    assert (history[-1].timestamp - history[0].timestamp) / 1000 > 0.5
