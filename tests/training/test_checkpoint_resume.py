"""Killed mid-stage, nothing lost: SIGKILL, resume, corrupt checkpoints, fsync order, checkpoint keys."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from pipelines.training import checkpoints
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from tests.project import REPO

TOY_PARAMS = {"seed": 5, "profile": "unit",
              "toy": {"train": {"lr": 0.01, "max_steps": 12, "batch_size": 8, "checkpoint_every": 2,
                                "keep_checkpoints": 2, "log_every": 3, "eval_every": 5, "warmup_steps": 2}}}
DVC_YAML = {"stages": {"toy": {"cmd": "python -m tests.training.resumable_stage --out out/toy", "deps": ["data.txt"],
                               "params": ["seed", "toy"], "outs": ["out/toy"]}}}


def _toy_project(root: Path) -> Path:
    from dvc.repo import Repo

    root.mkdir(parents=True)
    Repo.init(str(root), no_scm=True).close()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump(TOY_PARAMS))
    (root / "data.txt").write_text("upstream input\n")
    return root


def _env(root: Path, tracking: bool, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ALIGNFLOW_"))}
    env.update(ALIGNFLOW_ROOT=str(root), ALIGNFLOW_TRACKING="on" if tracking else "off",
               MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(REPO), **extra)
    return env


def _stage(root: Path, tracking: bool, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.training.resumable_stage", "--out", "out/toy"], cwd=root,
                            env=_env(root, tracking, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def _runs(root: Path) -> dict[str, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("alignflow")
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id])}


def test_sigkilled_stage_resumes_to_the_uninterrupted_result(tmp_path):
    """A real SIGKILL after a checkpoint, then a plain rerun: same weights (bitwise) and metrics.json (bytes)
    as a run never interrupted, the dead run's staging folder gone and its MLflow run KILLED.

    Fails if resume restores less than the loop's whole state (optimizer, scheduler, RNG, sampler,
    log window, eval bookkeeping), if the stage retrains from scratch (resumed_from_step), if the
    staging folder of the dead PID survives, or if the RUNNING run is not closed.
    """
    reference = _toy_project(tmp_path / "reference")
    _finish(_stage(reference, tracking=False))

    root = _toy_project(tmp_path / "killed")
    proc = _stage(root, tracking=True, TOY_STEP_SLEEP="0.15")
    deadline = time.monotonic() + 240
    while not list((root / "checkpoints/toy").glob("*/step_*/state.json")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    assert proc.poll() is None, "the stage finished before it could be killed; raise TOY_STEP_SLEEP"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    staged = root / "out" / f".toy.tmp-{proc.pid}"
    assert staged.is_dir() and not (root / "out/toy").exists()
    [killed_run] = _runs(root)
    assert _runs(root)[killed_run] == "RUNNING"

    err = _finish(_stage(root, tracking=True))
    assert not staged.exists() and "no longer runs" in err
    assert (root / "out/toy/model.safetensors").read_bytes() == \
        (reference / "out/toy/model.safetensors").read_bytes()
    assert (root / "out/toy/metrics.json").read_bytes() == (reference / "out/toy/metrics.json").read_bytes()
    facts = json.loads((root / "reports/machine/toy/facts.json").read_text())
    assert facts["resumed_from_step"] >= 2  # it resumed, it did not retrain
    assert json.loads((reference / "reports/machine/toy/facts.json").read_text())["resumed_from_step"] is None
    statuses = _runs(root)
    assert statuses.pop(killed_run) == "KILLED" and list(statuses.values()) == ["FINISHED"]
    assert sorted(p.name for p in (root / "out").iterdir()) == ["toy"]
    assert not any((root / "checkpoints/toy").iterdir())


# ---- the loop on its own ------------------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x)


DATA = [(torch.arange(4, dtype=torch.float32) * i / 10, torch.tensor([float(i % 3)])) for i in range(20)]


def _mse(model, batch):
    x, y = batch
    loss = F.mse_loss(model(x), y)
    return loss, {}


def _cfg(**changes) -> TrainConfig:
    return TrainConfig(**{"lr": 0.05, "max_steps": 6, "batch_size": 4, "checkpoint_every": 2,
                          "keep_checkpoints": 3, "log_every": 1, "seed": 1, **changes})


class Crash(Exception):
    pass


def _train(ckpt, crash_after: int | None = None, **changes):
    """Train a fresh Tiny; with `crash_after`, die inside the step after that many steps."""
    model, calls = Tiny(), []

    def loss_fn(m, batch):
        calls.append(1)
        if crash_after is not None and len(calls) > crash_after:
            raise Crash
        return _mse(m, batch)

    result = train(model, DATA, loss_fn, _cfg(**changes), checkpoint_dir=str(ckpt), progress=False)
    return model, result


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage_state"])
def test_corrupt_latest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog, damage):
    """The newest checkpoint is damaged; the loop warns, resumes from the one before and still ends with
    the weights of an uninterrupted run. Fails if a damaged checkpoint is loaded (a flipped byte in
    the weights loads without error: only the recorded sha256 catches it) or crashes the run."""
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Crash):
        _train(ckpt, crash_after=6, max_steps=8)  # checkpoints at steps 2, 4, 6
    latest = ckpt / "step_00000006"
    weights = latest / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-7])
    elif damage == "flip_byte":
        raw = bytearray(weights.read_bytes())
        raw[-1] ^= 0xFF
        weights.write_bytes(bytes(raw))
    else:
        (latest / "state.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="pipelines.training.checkpoints"):
        resumed, result = _train(ckpt, max_steps=8)
    assert result.resumed_from_step == 4
    assert any("skipping corrupt checkpoint" in r.message and "step_00000006" in r.message for r in caplog.records)
    straight, _ = _train(tmp_path / "straight", max_steps=8)
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.equal(a, b)


def test_all_checkpoints_corrupt_starts_from_scratch(tmp_path, caplog):
    """With nothing intact the run starts over (and says so) instead of failing or half-loading."""
    ckpt = tmp_path / "ckpt"
    _train(ckpt, max_steps=4, keep_checkpoints=2)
    for state in ckpt.glob("step_*/state.json"):
        state.write_text("")
    with caplog.at_level(logging.WARNING, logger="pipelines.training.checkpoints"):
        model, result = _train(ckpt, max_steps=4, keep_checkpoints=2)
    assert result.resumed_from_step is None and len([r for r in caplog.records if "corrupt" in r.message]) == 2
    straight, _ = _train(tmp_path / "straight", max_steps=4)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), straight.state_dict().values()))


def test_checkpoint_is_fsynced_before_older_ones_are_rotated_out(tmp_path, monkeypatch):
    """Fails if rotation can delete the last good checkpoint before the new one is durable on disk."""
    events = []
    monkeypatch.setattr(checkpoints, "fsync_tree", lambda p: events.append(("fsync", Path(p).name)))
    monkeypatch.setattr(checkpoints, "fsync_dir", lambda p: events.append(("fsync_dir", Path(p).name)))
    real_rmtree = checkpoints.shutil.rmtree
    monkeypatch.setattr(checkpoints.shutil, "rmtree",
                        lambda p, *a, **k: (events.append(("rmtree", Path(p).name)), real_rmtree(p, *a, **k)))
    _train(tmp_path / "ckpt", max_steps=6, keep_checkpoints=1)
    assert ("rmtree", "step_00000002") in events
    removal = events.index(("rmtree", "step_00000002"))
    assert events[removal - 2:removal] == [("fsync", ".tmp-step_00000004-%d" % os.getpid()), ("fsync_dir", "ckpt")]
    state = json.loads((tmp_path / "ckpt/step_00000006/state.json").read_text())
    assert set(state["files"]) == {"model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors"}


def test_dead_writers_half_checkpoints_are_removed(tmp_path):
    """A `.tmp-step_X-PID` folder of a dead process is cleaned on the next start; a live writer's is not."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ckpt = tmp_path / "ckpt"
    (ckpt / f".tmp-step_00000002-{dead.pid}").mkdir(parents=True)
    (ckpt / f".tmp-step_00000002-{os.getppid()}").mkdir()
    _train(ckpt, max_steps=2)
    assert not (ckpt / f".tmp-step_00000002-{dead.pid}").exists()
    assert (ckpt / f".tmp-step_00000002-{os.getppid()}").exists()
