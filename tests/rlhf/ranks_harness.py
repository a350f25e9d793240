"""Run a function on several gloo ranks in fresh processes and collect what each rank returns.

The component tests of work split across ranks compare the gathered multi-rank result with the
same call in one process. Each rank is a `torch.multiprocessing` spawn with RANK/WORLD_SIZE set
in its own environment, joins the process group through `pipelines.training.distributed.init`
and pickles its return value to `out/rank<r>.pkl`.
"""
from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn, args: tuple, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"})
    torch.set_num_threads(1)
    from pipelines.training import distributed

    distributed.init("gloo")
    try:
        result = fn(*args)
        (Path(out) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(fn, args: tuple, out: Path, world: int = 2) -> list:
    """`fn(*args)` on `world` gloo ranks (module-level `fn`, picklable args); the ranks' results in rank order."""
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world, _free_port(), fn, args, str(out)), nprocs=world, join=True)
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(world)]
