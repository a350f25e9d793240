"""Running a stage on several processes: `train.processes: N` (or a params `launcher:` block) -> torchrun.

`stage_main` asks `launch_plan` whether the stage wants more than one process: the largest
`processes` among the `train:` blocks of the stage's params (dvc.yaml's `params:` of the stage, or
the blocks the stage names, nested phase blocks and PPO's `optim:` included). When it does and this process is not
already a rank, `run_launched` re-executes the very same stage command under torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node N -m stages.X ARGS

or, with a top-level params block `launcher: {nnodes: K, rdzv_endpoint: HOST:PORT, rdzv_id: ID,
node_rank: R}` (the same params on every machine; `node_rank` only for a fixed order), the
multi-machine rendezvous form `--nnodes K --rdzv_backend c10d --rdzv_endpoint HOST:PORT`. Every rank
runs the stage function; alignflow/runtime/stage.py makes rank 0 the only writer.

Environment of the ranks (the parent's own `os.environ` is never changed): `GLOO_SOCKET_IFNAME=lo`
for a standalone run (gloo would otherwise pick an address from the host name), and explicit thread
counts: torchrun sets `OMP_NUM_THREADS=1` when it is unset, so each rank gets
`max(1, threads this process was given // N)` instead.

Exit codes: torchrun exits 1 whatever its child exited with, so a rank that fails on bad input
(exit 2 in stage_main) writes its one line to the file named by `ERROR_FILE_ENV`; the parent prints
that line, records it for the flow and exits 2 itself, which the flow does not retry.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.fingerprint import _stage_info

BAD_INPUT_EXIT = 2

ERROR_FILE_ENV = "ALIGNFLOW_LAUNCH_ERROR_FILE"
LAUNCHED_ENV = "ALIGNFLOW_LAUNCHED"
LAUNCHER_KEYS = {"nnodes": int, "node_rank": int, "rdzv_endpoint": str, "rdzv_id": str}
TRAIN_BLOCKS = ("train", "optim")  # names of TrainConfig blocks (`optim`: PPO's optimizer block)


@dataclass(frozen=True)
class LaunchPlan:
    """How to start a stage: processes per machine, and the rendezvous when it spans machines."""

    nproc: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str = "alignflow"
    node_rank: int | None = None

    @property
    def standalone(self) -> bool:
        return self.nnodes == 1


def under_launcher(env: Mapping[str, str] | None = None) -> bool:
    """This process is already one rank of a launched run (started by torchrun, ours or anyone's)."""
    env = os.environ if env is None else env
    return LAUNCHED_ENV in env or "TORCHELASTIC_RUN_ID" in env


def _lookup(params: Mapping, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def requested_processes(params: Mapping, keys: Sequence[str]) -> int:
    """The largest `processes` of any training block (`TRAIN_BLOCKS`) under the params `keys` (1 when none asks)."""
    found = [1]

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            at = f"{where}.{key}" if where else str(key)
            if key in TRAIN_BLOCKS and isinstance(value, Mapping) and "processes" in value:
                n = value["processes"]
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    raise ParamsError(f"params.yaml: {at}.processes: expected an integer >= 1, got {n!r}")
                found.append(n)
            walk(value, at)

    for key in keys:
        walk({key.split(".")[-1]: _lookup(params, key)}, ".".join(key.split(".")[:-1]))
    return max(found)


def launcher_block(params: Mapping) -> dict:
    """The top-level `launcher:` block, checked (empty when absent)."""
    block = params.get("launcher")
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ParamsError(f"params.yaml: launcher: expected a mapping, got {type(block).__name__}")
    for key, value in block.items():
        kind = LAUNCHER_KEYS.get(key)
        if kind is None:
            raise ParamsError(f"params.yaml: launcher.{key}: unknown key; allowed: {', '.join(sorted(LAUNCHER_KEYS))}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ParamsError(f"params.yaml: launcher.{key}: expected {kind.__name__}, got {value!r}")
    nnodes = block.get("nnodes", 1)
    if nnodes < 1 or block.get("node_rank", 0) < 0:
        raise ParamsError("params.yaml: launcher: nnodes must be >= 1 and node_rank >= 0")
    if nnodes > 1 and not block.get("rdzv_endpoint"):
        raise ParamsError("params.yaml: launcher.rdzv_endpoint: needed (HOST:PORT) when nnodes > 1")
    return dict(block)


def launch_plan(params: Mapping, keys: Sequence[str], env: Mapping[str, str] | None = None) -> LaunchPlan | None:
    """What to launch, or None when this process runs the stage itself (one process, or already a rank)."""
    nproc = requested_processes(params, keys)
    block = launcher_block(params)
    nnodes = int(block.get("nnodes", 1))
    if under_launcher(env) or (nproc == 1 and nnodes == 1):
        return None
    return LaunchPlan(nproc, nnodes, block.get("rdzv_endpoint"), str(block.get("rdzv_id", "alignflow")),
                      block.get("node_rank"))


def torchrun_command(plan: LaunchPlan, module: str, args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs `python -m module args` on every rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if plan.standalone:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", str(plan.nnodes), "--rdzv_backend", "c10d", "--rdzv_endpoint", str(plan.rdzv_endpoint),
                "--rdzv_id", plan.rdzv_id]
        if plan.node_rank is not None:
            cmd += ["--node_rank", str(plan.node_rank)]
    return [*cmd, "--nproc_per_node", str(plan.nproc), "-m", module, *args]


def inherited_threads(env: Mapping[str, str]) -> int:
    """The threads this stage was given: OMP_NUM_THREADS when set, else torch's current count."""
    value = env.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    import torch

    return torch.get_num_threads()


def rank_env(plan: LaunchPlan, base: Mapping[str, str], error_file: Path) -> dict[str, str]:
    """The environment of the ranks: the caller's, plus threads per rank, gloo's interface, the error file."""
    env = dict(base)
    threads = str(max(1, inherited_threads(base) // plan.nproc))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, **{LAUNCHED_ENV: "1", ERROR_FILE_ENV: str(error_file)})
    if plan.standalone:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def report_bad_input(line: str, record: str) -> bool:
    """In a rank: hand the stage's bad-input line to the launching parent; False when not launched by it."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"line": line, "record": record}) + "\n")
    return True


def run_launched(plan: LaunchPlan, module: str, args: Sequence[str], cwd: Path) -> tuple[int, dict | None]:
    """Run the stage under torchrun and wait: (torchrun's exit code, the first rank's bad-input report or None).

    SIGTERM or SIGINT to this process is passed on to torchrun, which stops its ranks.
    """
    with tempfile.TemporaryDirectory(prefix="alignflow-launch-") as tmp:
        error_file = Path(tmp) / "bad-input.jsonl"
        proc = subprocess.Popen(torchrun_command(plan, module, args), cwd=cwd,
                                env=rank_env(plan, os.environ, error_file))

        def forward(signum, _frame):
            proc.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        report = None
        if error_file.is_file():
            lines = [line for line in error_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            report = json.loads(lines[0]) if lines else None
    return code, report


def param_keys(root: Path, name: str, blocks: Sequence[str]) -> list[str]:
    """The params a stage depends on (its dvc.yaml `params:`) plus the blocks it names."""
    info = _stage_info(root, name)
    return sorted(set(info.params if info is not None else ()) | set(blocks))


# The runtime joins the process group with torch.distributed itself, under the same environment contract
# as pipelines/training/distributed.py `init()` (which then finds the group joined): importing that
# module here would make every stage, training or not, depend on the training code (alignflow/code_deps.py).

@dataclass(frozen=True)
class RankOfStage:
    """Where this process sits in a launched stage."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_ranks() -> RankOfStage | None:
    """This process's rank when it is one rank of a launched stage (joining the process group), else None."""
    if not under_launcher():
        return None
    import torch
    import torch.distributed as dist

    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    except ValueError as exc:
        raise ParamsError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {exc}") from exc
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return RankOfStage(rank, world)


def _joined() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def same_on_every_rank(value: Any) -> Any:
    """Rank 0's `value` on every rank of a launched stage (the value itself otherwise)."""
    if not under_launcher() or not _joined():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def meet_ranks(rank: RankOfStage | None) -> None:
    """Every rank has finished the stage function (none failed) before rank 0 commits; then the group closes."""
    if rank is not None and _joined():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def relaunch(name: str, plan: LaunchPlan, fn: Callable, argv: Sequence[str], record: Callable[[str], None]) -> int:
    """Run this stage command on every rank under torchrun; the exit code for the caller (2 for bad input).

    `record` writes a rank's bad-input line to the flow's run record, once.
    """
    module = fn.__module__
    if module == "__main__":
        module = getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None)
    if not module:
        print(f"alignflow stage '{name}' failed: several processes need the stage run as `python -m MODULE`",
              file=sys.stderr)
        return BAD_INPUT_EXIT
    logging.getLogger("alignflow.stage").info(
        "starting %d process(es) on each of %d machine(s) under torchrun", plan.nproc, plan.nnodes)
    code, report = run_launched(plan, module, argv, Path.cwd())
    if code != 0 and report is not None:
        print(report["line"], file=sys.stderr)
        record(report["record"])
        return BAD_INPUT_EXIT
    return code
