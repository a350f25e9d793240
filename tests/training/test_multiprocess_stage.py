"""A training stage on 2 ranks over gloo, through stage_main and the torchrun launcher (real processes).

The stage (tests/training/ranked_stage.py) trains a token-mean toy loss for two steps. Two ranks at
batch 2 must see, step by step, exactly the examples one process sees at batch 4, reach the same
losses and weights (tolerance 1e-5: two half-batch sums and an all-reduce round differently from
one batch), leave one MLflow run and one output, and a run resumed from a 2-rank checkpoint must
equal the straight 2-rank run bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.project import REPO
from tests.training.deepspeed_extra import requires_deepspeed

pytestmark = pytest.mark.slow
TOL = 1e-5
DVC_YAML = {"stages": {"toy": {"cmd": "python -m tests.training.ranked_stage --out out/toy",
                               "params": ["seed", "toy"], "outs": ["out/toy"]}}}


def _project(root: Path, n: int = 24, **train) -> Path:
    from dvc.repo import Repo

    root.mkdir(parents=True)
    Repo.init(str(root), no_scm=True).close()
    block = {"lr": 0.05, "weight_decay": 0.1, "max_steps": 2, "log_every": 1, "checkpoint_every": 1,
             "time_budget_s": 900, **train}  # a budget never reached: rank 0's clock is asked every step
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 3, "profile": "unit", "toy": {"n": n, "train": block}}))
    (root / "trace").mkdir()
    (root / "tmp").mkdir()
    return root


def _stage(root: Path, tracking: bool = False, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ALIGNFLOW_", "RANKED_"))}
    env.update(ALIGNFLOW_ROOT=str(root), ALIGNFLOW_TRACKING="on" if tracking else "off", PYTHONPATH=str(REPO),
               MLFLOW_DISABLE_TELEMETRY="true", RANKED_TRACE_DIR=str(root / "trace"), TMPDIR=str(root / "tmp"),
               OMP_NUM_THREADS="2", **extra)
    return subprocess.run([sys.executable, "-m", "tests.training.ranked_stage", "--out", "out/toy"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]


def _trace(root: Path, ranks: int) -> list[list[list[int]]]:
    return [json.loads((root / "trace" / f"rank{r}.json").read_text()) for r in range(ranks)]


def _metrics(root: Path) -> dict:
    return json.loads((root / "out/toy/metrics.json").read_text())


def _weights(root: Path) -> dict:
    return load_file(str(root / "out/toy/model.safetensors"))


def _one_vs_two(tmp_path: Path, **train) -> tuple[Path, Path]:
    """The stage at 1 process x batch 4 and at 2 ranks x batch 2 (tracked), compared; (one, two)."""
    one = _project(tmp_path / "one", batch_size=4, processes=1, **train)
    _ok(_stage(one))
    two = _project(tmp_path / "two", batch_size=2, processes=2, **train)
    _ok(_stage(two, tracking=True))

    [single] = _trace(one, 1)
    per_rank = _trace(two, 2)
    assert len(single) == 2 and all(len(steps) == 2 for steps in per_rank)
    for step, indices in enumerate(single):
        assert per_rank[0][step] + per_rank[1][step] == indices  # rank blocks in order = the 1-process batch

    h1, h2 = _metrics(one)["history"], _metrics(two)["history"]
    for a, b in zip(h1, h2, strict=True):
        assert a["examples_seen"] == b["examples_seen"] and a["tokens_seen"] == b["tokens_seen"]
        assert a["train_target_tokens"] == b["train_target_tokens"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=TOL)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=TOL)
    w1, w2 = _weights(one), _weights(two)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=TOL)

    # one output, no leftovers (staging folders, the other rank's scratch), one finished MLflow run
    assert sorted(p.name for p in (two / "out").iterdir()) == ["toy"]
    assert sorted(p.name for p in (two / "out/toy").iterdir()) == ["metrics.json", "model.safetensors"]
    assert not [p for p in (two / "tmp").iterdir() if p.name.startswith("alignflow-rank")]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{two}/mlflow/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("alignflow").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.params["toy.train.processes"] == "2"
    return one, two


def test_two_ranks_equal_one_process_at_twice_the_batch_and_resume_exactly(tmp_path):
    """Torch backend. Fails if ranks draw their own shuffles or overlapping slices instead of blocks of
    one stream, if gradients are not averaged (or averaged without token weighting: ranks hold different
    token counts), if a parameter without a gradient on any rank gets a zero one (weight decay would then
    move it), if metrics or counts are not reduced, if a rank other than 0 writes outputs or opens an
    MLflow run, if the launcher is skipped (one trace only), or if a resume from the 2-rank checkpoint
    restores less than the straight run had (weights would differ bitwise, resumed_from_step missing)."""
    one, two = _one_vs_two(tmp_path)
    torch.testing.assert_close(_weights(two)["unused.weight"], _weights(one)["unused.weight"], rtol=0, atol=0)

    resumed = _project(tmp_path / "resumed", batch_size=2, processes=2)
    crashed = _stage(resumed, RANKED_CRASH_AFTER="1")
    assert crashed.returncode == 1 and "crash requested" in crashed.stderr
    assert not (resumed / "out/toy").exists()
    _ok(_stage(resumed))
    facts = json.loads((resumed / "reports/machine/toy/facts.json").read_text())
    assert facts["resumed_from_step"] == 1
    assert _metrics(resumed)["history"] == _metrics(two)["history"]
    w2, w3 = _weights(two), _weights(resumed)
    assert all(torch.equal(w3[k], w2[k]) for k in w2)


@requires_deepspeed
def test_deepspeed_zero2_stage_on_two_ranks_equals_one_process(tmp_path):
    """The same comparison through the DeepSpeed engine (ZeRO 2, each rank holding half the optimizer
    state). Fails if the engine is not given the loop's token-weighted loss, if its reduction is
    bypassed, or if rank 0's save or output commit needs the other rank's partition and misses it.
    (ZeRO 0 and the 2-rank DeepSpeed resume: tests/training/test_multiprocess_deepspeed.py.)"""
    _one_vs_two(tmp_path, deepspeed={"zero_stage": 2})


def test_bad_input_on_the_ranks_exits_2_with_the_stage_line_once(tmp_path):
    """Fails if torchrun's exit code 1 reaches the caller (the flow would retry bad input), if the line
    is lost or printed by every rank, or if the run record gets no error or more than one."""
    root = _project(tmp_path / "bad", n=0, batch_size=2, processes=2)
    record = tmp_path / "record.jsonl"
    proc = _stage(root, ALIGNFLOW_RUN_RECORD=str(record))
    line = "alignflow stage 'toy' failed: params.yaml: toy.n: expected at least 1 example, got 0"
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count(line) == 1 and "starting 2 process(es)" in proc.stderr
    rows = [json.loads(r) for r in record.read_text().splitlines()]
    assert rows == [{"stage": "toy", "error": "stage 'toy': params.yaml: toy.n: expected at least 1 example, got 0"}]
    assert not (root / "out/toy").exists()
