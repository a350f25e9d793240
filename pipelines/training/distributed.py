"""Ranks of a multi-process run, and the few collective operations the pipeline needs.

A stage launched under `torchrun` (see alignflow/runtime/launch.py) runs the same code on every
rank; `RANK`, `WORLD_SIZE` and `LOCAL_RANK` come from the launcher and default to one process.
`init()` joins the process group (gloo on CPU, NCCL on GPU) once; every helper here is a no-op
for one process, so components call them unconditionally.

Work that is not a gradient step (rollouts, best-of-n pools, evaluation generation) is split with
`shard` (a contiguous, balanced block per rank) and put back together with `gather`, which
concatenates in rank order: the gathered list has the order of the unsplit input.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's rank and the world size, from the launcher's environment (one process by default)."""
    try:
        return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {exc}") from exc


_comm_seconds = 0.0


def comm_seconds() -> float:
    """Wall seconds this process has spent inside the collectives of this module (benchmarks read it).

    It includes waiting for slower ranks at the collective, as a profiler's all-reduce time does.
    """
    return _comm_seconds


def _timed(fn):
    """Count the wall time of a collective helper into `comm_seconds` (when it communicates)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _comm_seconds
        if not is_distributed():
            return fn(*args, **kwargs)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _comm_seconds += time.perf_counter() - start
    return wrapper


def comm_device() -> torch.device:
    """Where a collective's own tensors live: NCCL only reduces CUDA tensors, gloo CPU ones."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init(backend: str | None = None) -> Ranks:
    """Join the process group when launched with more than one rank; safe to call repeatedly."""
    here = ranks()
    if here.world > 1 and dist.is_available() and not dist.is_initialized():
        chosen = backend or default_backend()
        if chosen == "nccl":
            torch.cuda.set_device(here.local_rank)
        dist.init_process_group(backend=chosen, rank=here.rank, world_size=here.world)
    return here


@_timed
def barrier() -> None:
    if is_distributed():
        dist.barrier()


@_timed
def all_reduce_sum(values: Mapping[str, float]) -> dict[str, float]:
    """Sum each named value over ranks (every rank gets the sums); keys must match on every rank."""
    keys = sorted(values)
    if not is_distributed() or not keys:
        return {k: float(values[k]) for k in keys}
    flat = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return dict(zip(keys, flat.tolist()))


def all_reduce_mean(values: Mapping[str, float]) -> dict[str, float]:
    """The mean of each named value over ranks."""
    world = dist.get_world_size() if is_distributed() else 1
    return {k: v / world for k, v in all_reduce_sum(values).items()}


def shard_bounds(n: int, rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """[start, end) of this rank's contiguous block of n items; the first n % world ranks get one more."""
    here = ranks()
    rank = here.rank if rank is None else rank
    world = here.world if world is None else world
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: Sequence, rank: int | None = None, world: int | None = None) -> list:
    """This rank's contiguous block of `items` (all of them for one process)."""
    start, end = shard_bounds(len(items), rank, world)
    return list(items[start:end])


@_timed
def gather(part: Sequence) -> list:
    """Concatenate every rank's `part` in rank order, on every rank (picklable items; in-process only)."""
    if not is_distributed():
        return list(part)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(part))
    return [item for chunk in parts for item in chunk]


@_timed
def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---- data-parallel gradient steps (used by pipelines/training/backends.py and loop.py) ----------------

_BUCKET_ELEMENTS = 16 * 1024 * 1024  # gradients are flattened into buckets of at most this many elements


@_timed
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers into every rank's `module` (ranks start from one model)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


@_timed
def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks, in place (what DDP's reducer computes).

    Called once per optimizer step, after the last micro-batch's backward, so it works for any
    loss function: one calling a model method or a sub-module instead of `forward`, or one that
    leaves some parameters without a gradient. A parameter keeps `grad = None` only when it has no
    gradient on any rank (as AdamW then skips it in one process too); when some ranks have one,
    the others count zeros. Gradients are flattened into buckets per dtype so a step costs a few
    collectives, not one per tensor.
    """
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=comm_device())
    dist.all_reduce(has, op=dist.ReduceOp.SUM)
    live = [p for p, flag in zip(params, has.tolist()) if flag > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    world = dist.get_world_size()
    bucket: list[torch.Tensor] = []
    size = 0
    for p in sorted(live, key=lambda q: str(q.grad.dtype)) + [None]:
        if p is None or (bucket and (size + p.numel() > _BUCKET_ELEMENTS or p.grad.dtype != bucket[0].dtype)):
            if bucket:
                flat = torch.cat([g.reshape(-1) for g in bucket])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                flat /= world
                offset = 0
                for g in bucket:
                    g.copy_(flat[offset:offset + g.numel()].view_as(g))
                    offset += g.numel()
            bucket, size = [], 0
        if p is not None:
            bucket.append(p.grad)
            size += p.numel()


def rank_scale(weight: float) -> float:
    """How much this rank's mean loss counts so that the mean over ranks is the mean over the union.

    A rank whose loss is a mean over `weight` items (tokens) gets `weight * world / total weight`;
    averaging the scaled losses (and their gradients) over ranks then equals the loss one process
    computes on the concatenated batch. 1.0 for one process; 0.0 everywhere when no rank has items.
    """
    if not is_distributed():
        return 1.0
    total = all_reduce_sum({"w": float(weight)})["w"]
    return float(weight) * dist.get_world_size() / total if total > 0 else 0.0
