"""Every training stage family at `processes: 2`, end to end through `stage_main` and torchrun.

A copy of the session's smoke project (its upstream outputs already made) gets `processes: 2` and
a few steps in each training block; each stage's own dvc.yaml command then runs as a subprocess, so
stage_main re-launches it under torchrun with two gloo ranks. Each must exit 0 and leave one output
with its metrics and exactly one finished MLflow run, whose logged step counts show both ranks'
batches. The stages run in DAG order, each on its upstream's 2-process output.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.integration]

STEPS = 2  # optimizer steps per training block: enough for a step on both ranks and a checkpoint

# stage -> (params path of its training blocks, whether its MLflow history counts examples per step)
STAGES = {
    "base_lm": (["base_lm.train"], True),
    "sft": (["sft.train"], True),
    "gram_pretrain": (["gram_pretrain.train"], True),
    "bt_rm": (["bt_rm.train"], True),
    "gram_finetune@gram": (["gram.train"], True),
    "dpo": (["dpo.train"], True),
    "ppo@ppo_gram": (["ppo.optim"], False),
    "lisa": (["lisa.train"], False),
    "st_train@st_nast": (["st.nast.train"], True),
    "visual_policy": (["visual.policy.train"], True),
    "rovrm@rovrm": ([f"visual.rm.phases.{p}.train" for p in ("text", "caption", "visual")], False),
}
TIMINGS: dict[str, float] = {}


def _block(params: dict, dotted: str) -> dict:
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _two_process_params(params: dict) -> dict:
    """`processes: 2` and STEPS steps in every training block of STAGES (checkpoints every step)."""
    for blocks, _ in STAGES.values():
        for dotted in blocks:
            block = _block(params, dotted)
            block["processes"] = 2
            if dotted != "ppo.optim":  # PPO's optimizer length is derived from ppo.max_steps
                block["max_steps"] = STEPS
            if "checkpoint_every" in block:
                block["checkpoint_every"] = 1
            if block.get("eval_every"):
                block["eval_every"] = 1
    params["ppo"].update(max_steps=STEPS, eval_every=1)
    return params


@pytest.fixture(scope="module")
def project(smoke_project, tmp_path_factory) -> Path:
    """A copy of the smoke project with its outputs, without its MLflow store, checkpoints or DVC cache."""
    root = tmp_path_factory.mktemp("multiprocess") / "alignflow"
    top, dvc = str(smoke_project.root), str(smoke_project.root / ".dvc")

    def skip(folder: str, names: list[str]) -> set[str]:
        return {"mlflow", "checkpoints"} & set(names) if folder == top else {"cache", "tmp"} & set(names) \
            if folder == dvc else set()

    shutil.copytree(smoke_project.root, root, symlinks=False, ignore=skip)
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(_two_process_params(params), sort_keys=False))
    return root


def _stage(root: Path, stage: str):
    """The stage's dvc.yaml entry (DVC names stages relative to the working directory: load it from `root`)."""
    from alignflow.runtime.stage_graph import load_stage_graph

    with contextlib.chdir(root):
        return load_stage_graph(root).stages[stage]


def _command(root: Path, stage: str) -> list[str]:
    tokens = shlex.split(_stage(root, stage).cmd)
    assert tokens[0] == "python"
    return [sys.executable, *tokens[1:]]


def _client(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")


def _runs(root: Path, stage: str) -> list:
    client = _client(root)
    experiment = client.get_experiment_by_name("alignflow")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`alignflow.stage` = '{stage}'")


def _examples_per_step(root: Path, run) -> float:
    """Examples the loop counted per optimizer step, from the run's last logged `train.examples_seen`."""
    history = _client(root).get_metric_history(run.info.run_id, "train.examples_seen")
    assert history, sorted(run.data.metrics)
    last = max(history, key=lambda m: m.step)
    return last.value / last.step


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_trains_on_two_processes(project, smoke_project, stage):
    """Fails if a stage cannot run under torchrun (a collective only some ranks reach, a rank writing
    outputs or MLflow runs, a bad-input exit), if it leaves no output or metrics, if it opens more
    than one MLflow run, if it was not launched on 2 processes, or if its loop did not count both
    ranks' batches (examples per step twice the one-process smoke run's)."""
    env = {**smoke_project.env, "GLOO_SOCKET_IFNAME": "lo"}
    before = len(_runs(project, stage))
    start = time.perf_counter()
    proc = subprocess.run(_command(project, stage), cwd=project, env=env, capture_output=True, text=True,
                          timeout=900)
    TIMINGS[stage] = round(time.perf_counter() - start, 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "starting 2 process(es)" in proc.stderr, proc.stderr[-3000:]
    outs = _stage(project, stage).outs
    for out in outs:
        assert (project / out).exists(), out
    metrics = [project / out / "metrics.json" for out in outs if (project / out / "metrics.json").is_file()]
    assert metrics and all(json.loads(m.read_text()) for m in metrics)
    runs = _runs(project, stage)
    assert len(runs) == before + 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("alignflow.processes") == "2", "the run was not written by rank 0 of 2 ranks"
    facts = json.loads((project / "reports" / "machine" / stage / "facts.json").read_text())
    assert facts["processes"] == 2
    asked = {k: v for k, v in run.data.params.items() if k.endswith(".processes")}
    assert asked and set(asked.values()) == {"2"}, asked
    if STAGES[stage][1]:
        one_process = _runs(smoke_project.root, stage)
        assert one_process, f"the smoke run has no MLflow run of {stage}"
        ratio = _examples_per_step(project, run) / _examples_per_step(smoke_project.root, one_process[0])
        # batches of a fixed size give exactly 2; speech buckets vary a little in size
        assert ratio == pytest.approx(2.0, rel=0.15 if stage.startswith("st_train") else 1e-9), ratio


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    """Each stage's wall time at 2 processes, printed when the module ends (the slow test's budget)."""
    yield
    if TIMINGS:
        print(f"\n2-process stage seconds: {json.dumps(TIMINGS)} total {round(sum(TIMINGS.values()), 1)}",
              file=sys.__stderr__)
