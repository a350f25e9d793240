"""Fast checks of the multi-process arithmetic and launcher decisions (no process group is started)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from alignflow.runtime import launch
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.param_schema import check_params
from alignflow.runtime.params import overlay
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import rank_scale
from pipelines.training.loop import rank_indices
from pipelines.training.rng import IndexStream


@pytest.mark.parametrize("world,batch", [(1, 4), (2, 3), (3, 5), (4, 2)])
def test_rank_blocks_of_one_stream_are_the_one_process_batch(world, batch):
    """Fails if ranks draw from their own streams, interleave, overlap or skip indices, or if the stream
    of a rank advances differently from the one-process stream (a resume would then diverge); epochs
    wrap inside a step here (n=7)."""
    single = IndexStream(7, seed=11)
    streams = [IndexStream(7, seed=11) for _ in range(world)]
    for _ in range(6):
        expected = single.take(batch * world)
        blocks = [rank_indices(streams[r], batch, r, world) for r in range(world)]
        assert all(len(b) == batch for b in blocks)
        assert [i for b in blocks for i in b] == expected
        assert all(s.meta() == single.meta() for s in streams)


def test_rank_scale_is_one_for_a_single_process():
    """Fails if one process scales its loss (one-process results would change)."""
    assert rank_scale(17.0) == 1.0


PARAMS = {
    "seed": 1,
    "sft": {"train": {"max_steps": 3, "processes": 2}},
    "visual": {"rm": {"phases": {"text": {"train": {"processes": 3}}, "caption": {"train": {"max_steps": 1}}}}},
    "ppo": {"optim": {"lr": 0.1, "processes": 4}},
    "bt_rm": {"train": {"max_steps": 1}},
}


def test_requested_processes_is_the_largest_of_the_stage_blocks():
    """Fails if nested phase blocks or PPO's optim block are not searched, if blocks of other stages are,
    or if a stage without the key asks for more than one process."""
    assert launch.requested_processes(PARAMS, ["seed", "sft"]) == 2
    assert launch.requested_processes(PARAMS, ["seed", "visual"]) == 3
    assert launch.requested_processes(PARAMS, ["visual.rm.phases.caption"]) == 1
    assert launch.requested_processes(PARAMS, ["rlhf_seed", "ppo"]) == 4
    assert launch.requested_processes(PARAMS, ["bt_rm"]) == 1


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_a_bad_processes_value_names_its_key(bad):
    """Fails if 0, a bool, a string or a float is accepted as a process count, or the message loses the key."""
    with pytest.raises(ParamsError, match=r"params.yaml: sft.train.processes: expected an integer >= 1"):
        launch.requested_processes({"sft": {"train": {"processes": bad}}}, ["sft"])
    with pytest.raises((ValueError, TypeError)):
        TrainConfig(processes=bad)


def test_launch_plan_only_outside_a_launcher_and_for_more_than_one_process():
    """Fails if a rank would launch again (endless nesting) or a one-process stage goes through torchrun."""
    assert launch.launch_plan(PARAMS, ["bt_rm"], env={}) is None
    assert launch.launch_plan(PARAMS, ["sft"], env={launch.LAUNCHED_ENV: "1"}) is None
    assert launch.launch_plan(PARAMS, ["sft"], env={"TORCHELASTIC_RUN_ID": "x"}) is None
    assert launch.launch_plan(PARAMS, ["sft"], env={}) == launch.LaunchPlan(nproc=2)


def test_torchrun_command_standalone_and_rendezvous():
    """Fails if the one-machine form loses --standalone, or the several-machine form its c10d rendezvous."""
    cmd = launch.torchrun_command(launch.LaunchPlan(2), "stages.sft", ["--out", "models/sft"])
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "stages.sft", "--out", "models/sft"]
    params = {"launcher": {"nnodes": 2, "rdzv_endpoint": "10.0.0.1:29500", "node_rank": 1}, **PARAMS}
    plan = launch.launch_plan(params, ["bt_rm"], env={})
    cmd = launch.torchrun_command(plan, "stages.bt_rm", [])
    assert cmd[3:] == ["--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "10.0.0.1:29500",
                       "--rdzv_id", "alignflow", "--node_rank", "1", "--nproc_per_node", "1", "-m", "stages.bt_rm"]


@pytest.mark.parametrize("block,match", [
    ({"nnodes": 2}, "rdzv_endpoint: needed"),
    ({"nodes": 2}, "launcher.nodes: unknown key"),
    ({"nnodes": "2"}, "launcher.nnodes: expected int"),
    ({"nnodes": 0}, "nnodes must be >= 1"),
])
def test_a_bad_launcher_block_is_one_line(block, match):
    """Fails if a typo or a missing endpoint in the launcher block reaches torchrun instead of a clear error."""
    with pytest.raises(ParamsError, match=match):
        launch.launcher_block({"launcher": block})


def test_rank_env_threads_interface_and_error_file(monkeypatch):
    """Fails if ranks inherit torchrun's OMP_NUM_THREADS=1 (or the full share each, oversubscribing), if a
    standalone run does not pin gloo to the loopback interface, or if the caller's environment changes."""
    before = dict(os.environ)
    env = launch.rank_env(launch.LaunchPlan(2), {"OMP_NUM_THREADS": "6"}, Path("/x/err"))
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["GLOO_SOCKET_IFNAME"] == "lo" and env[launch.ERROR_FILE_ENV] == "/x/err"
    assert launch.rank_env(launch.LaunchPlan(4), {"OMP_NUM_THREADS": "2"}, Path("e"))["OMP_NUM_THREADS"] == "1"
    multi = launch.rank_env(launch.LaunchPlan(2, nnodes=2, rdzv_endpoint="h:1"), {"OMP_NUM_THREADS": "8"}, Path("e"))
    assert "GLOO_SOCKET_IFNAME" not in multi and multi["OMP_NUM_THREADS"] == "4"
    assert dict(os.environ) == before


def test_processes_is_an_optional_params_key(tmp_path):
    """Fails if a params file or a profile overlay cannot set `processes` in a training block (or the
    top-level `launcher` block) without the default profile declaring it (the default DAG would go
    stale), if a wrong type gets through, or if `launcher` is accepted anywhere but the top level."""
    schema = {"seed": 1, "sft": {"train": {"max_steps": 3}}, "ppo": {"optim": {"lr": 0.1}}}
    ok = {"seed": 1, "sft": {"train": {"max_steps": 3, "processes": 2}}, "ppo": {"optim": {"lr": 0.1, "processes": 2}},
          "launcher": {"nnodes": 1}}
    check_params(ok, "params.yaml", schema=schema)
    with pytest.raises(ParamsError, match=r"sft.train.processes: expected int"):
        check_params({**ok, "sft": {"train": {"max_steps": 3, "processes": "2"}}}, "params.yaml", schema=schema)
    with pytest.raises(ParamsError, match="unknown key 'sft.train.procs'"):
        check_params({**ok, "sft": {"train": {"max_steps": 3, "procs": 2}}}, "params.yaml", schema=schema)
    assert overlay(schema, {"sft": {"train": {"processes": 2}}}, "profiles/x.yaml")["sft"]["train"]["processes"] == 2
    assert overlay(schema, {"launcher": {"nnodes": 2}}, "profiles/x.yaml")["launcher"] == {"nnodes": 2}
    with pytest.raises(ParamsError, match="unknown key 'sft.launcher'"):
        check_params({**ok, "sft": {"train": {"max_steps": 3}, "launcher": {}}}, "params.yaml", schema=schema)
