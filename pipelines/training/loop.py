"""The one training loop every stage (pre-training, SFT, reward model, ...) composes.

Stages supply a model, a map-style dataset, a collate function and a ``loss_fn``; the loop
owns optimisation (AdamW, linear warmup + cosine decay, clipping, gradient accumulation:
pipelines/training/backends.py), seeded data order (pipelines/training/rng.py), evaluation,
time budgets and exact resume from checkpoints (pipelines/training/checkpoints.py).
The run's settings are a `TrainConfig` (pipelines/training/config.py).

Data contract: ``train_data`` is any sequence supporting ``len`` and ``__getitem__``.
Example indices come from a seeded ``torch.Generator`` permutation that is consumed as one
continuous stream across epochs, so ``batch 4 x accum 1`` and ``batch 2 x accum 2`` see the
same examples per optimizer step. ``collate_fn(list_of_examples) -> batch`` (default:
``torch.utils.data.default_collate``). ``loss_fn(model, batch) -> (loss, {name: float})``
must return the *mean* loss of the micro-batch (for causal LMs:
``pipelines.models.causal_lm.causal_lm_loss``).

With a ``checkpoint_dir`` the loop checkpoints every ``checkpoint_every`` steps and at the end,
and resumes from the newest intact checkpoint there. History rows hold no wall times (they end
up in tracked outputs); ``TrainResult.elapsed_s`` carries the run's wall time.

Several ranks (a stage under torchrun; pipelines/training/distributed.py): every micro-step takes
``batch_size * world`` indices from the one seeded stream and rank r trains on the r-th block of
``batch_size``, so W ranks at batch b see exactly the examples one process sees at batch W*b and
the stream (hence resume) is the same on every rank. Gradients are averaged over ranks (backends.py).
A loss that is a mean over tokens says so by returning ``target_tokens`` among its metrics (as
``causal_lm_loss`` does): each rank's loss is then weighted by its share of the step's tokens,
which makes the averaged gradient, the logged loss and the metrics those of the concatenated batch
(exact up to float rounding). Without it a loss counts as a mean over the rank's examples, equal
on every rank. Counts (examples, tokens, ``target_tokens``) are summed over ranks, other metrics
averaged with the same weights; every rank returns the same result. Only rank 0 shows progress.
``eval_fn`` runs on every rank (the weights are the same everywhere, so are its numbers); a stage
whose evaluation is expensive splits it with ``distributed.shard``/``gather`` inside ``eval_fn``.
Every rank must call ``train`` (collectives and checkpoint saves need all of them); with one
process none of this runs and results are bit-identical to the single-process loop.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from pipelines.training.backends import make_backend
from pipelines.training.checkpoints import (Progress, latest_checkpoint, load_checkpoint, remove_dead_tmp,
                                            save_checkpoint)
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import all_reduce_sum, broadcast, comm_seconds, init as init_ranks, rank_scale
from pipelines.training.rng import IndexStream, set_seed

LossFn = Callable[[Any, Any], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[Any], "dict[str, float]"]
LogFn = Callable[[dict], None]
WEIGHT_METRIC = "target_tokens"  # a loss_fn metric naming how many items its mean loss averages over
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced: metrics for reports, history rows for plots, counters."""

    final_metrics: dict
    history: list
    steps: int
    examples_seen: int
    tokens_seen: int
    stopped_by_time_budget: bool
    elapsed_s: float
    resumed_from_step: Optional[int] = None
    comm_s: float = 0.0  # of elapsed_s, seconds inside collectives (0 for one process): a machine fact


def _batch_counts(batch) -> tuple[int, int]:
    """(examples, tokens) in a collated batch, for throughput accounting."""
    if torch.is_tensor(batch):
        return batch.shape[0], batch.numel()
    if isinstance(batch, dict):
        if "attention_mask" in batch:
            mask = batch["attention_mask"]
            return mask.shape[0], int(mask.sum())
        for v in batch.values():
            if torch.is_tensor(v):
                return v.shape[0], v.numel()
    return 0, 0


def rank_indices(stream: IndexStream, batch_size: int, rank: int, world: int) -> list[int]:
    """This rank's micro-batch: block `rank` of the next `batch_size * world` indices of the stream."""
    step = stream.take(batch_size * world)
    return step[rank * batch_size:(rank + 1) * batch_size]


def _reduce_step(loss_sum: float, extras: dict, examples: int, tokens: int) -> tuple[float, dict, int, int]:
    """One collective for a step's numbers: weighted means for losses and metrics, sums for counts."""
    local = {"loss": loss_sum, "examples": examples, "tokens": tokens,
             **{f"m.{k}": v for k, v in extras.items()}}
    total = all_reduce_sum(local)
    world = init_ranks().world
    metrics = {k[2:]: v if k[2:] == WEIGHT_METRIC else v / world for k, v in total.items() if k.startswith("m.")}
    return total["loss"] / world, metrics, int(round(total["examples"])), int(round(total["tokens"]))


def _out_of_time(cfg, start: float, world: int) -> bool:
    """The time budget is spent (rank 0's clock decides, so every rank stops at the same step)."""
    if cfg.time_budget_s is None:
        return False
    spent = time.perf_counter() - start >= cfg.time_budget_s
    return bool(broadcast(spent)) if world > 1 else spent


def _run_eval(eval_fn, model) -> dict:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        metrics = {f"eval_{k}": float(v) for k, v in eval_fn(model).items()}
    model.train(was_training)
    return metrics


def _recorder(prog: Progress, on_log: Optional[LogFn]) -> Callable[[dict], None]:
    """Record a row in the history and hand it to `on_log` (a copy: the history row may be merged into later)."""

    def record(row: dict) -> None:
        _record(prog.history, row)
        if on_log is not None:
            on_log(dict(row))

    return record


def _record(history: list, row: dict) -> None:
    """Merge rows logged at the same step (train and eval) into one history entry."""
    if history and history[-1]["step"] == row["step"]:
        history[-1].update(row)
    else:
        history.append(row)


def train(
    model,
    train_data: Sequence,
    loss_fn: LossFn,
    cfg,
    eval_fn: Optional[EvalFn] = None,
    checkpoint_dir: Optional[str] = None,
    progress: bool = True,
    collate_fn: Optional[Callable] = None,
    on_log: Optional[LogFn] = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps and report.

    ``on_log(row)`` (main rank only) gets each history row as it is recorded (train rows every
    ``log_every`` steps, eval rows every ``eval_every``), so a caller can stream curves while the
    run goes on (a stage logs them to MLflow); rows of one step may come in two parts (train, eval).

    Resumes from the newest complete checkpoint in ``checkpoint_dir`` if there is one.
    A run stopped by ``time_budget_s`` saves a checkpoint (when a dir is given), so calling
    ``train`` again continues it.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    here = init_ranks()
    if cfg.processes != here.world:
        log.warning("train.processes is %d but %d rank(s) run: batches are sharded over %d",
                    cfg.processes, here.world, here.world)
    collate = collate_fn or default_collate
    set_seed(cfg.seed)
    stream = IndexStream(len(train_data), cfg.seed)
    backend = make_backend(model, cfg)
    prog = Progress()
    record = _recorder(prog, on_log if here.is_main else None)
    resumed_from = None
    if here.is_main and checkpoint_dir and Path(checkpoint_dir).is_dir():
        remove_dead_tmp(Path(checkpoint_dir))
    latest = latest_checkpoint(checkpoint_dir) if here.is_main else None
    latest = broadcast(latest) if here.world > 1 else latest
    if latest is not None:
        load_checkpoint(latest, backend, stream, prog)
        resumed_from = prog.step
    last_saved = prog.step if latest is not None else None
    model.train()
    start = time.perf_counter()
    comm_start = comm_seconds()
    stopped = False
    bar = tqdm(
        total=cfg.max_steps, initial=prog.step, disable=not (progress and here.is_main), file=sys.stderr,
        desc="train", dynamic_ncols=True,
    )
    while prog.step < cfg.max_steps:
        if _out_of_time(cfg, start, here.world):
            stopped = True
            break
        lr = backend.current_lr()
        losses, extras = [], {}
        grad_norm = None
        step_examples = step_tokens = 0
        for micro in range(cfg.grad_accum_steps):
            if here.world == 1:
                batch = collate([train_data[i] for i in stream.take(cfg.batch_size)])
            else:
                batch = collate([train_data[i] for i in rank_indices(stream, cfg.batch_size, here.rank, here.world)])
            loss, metrics = loss_fn(backend.module, batch)
            scale = 1.0
            if here.world > 1 and WEIGHT_METRIC in (metrics or {}):
                scale = rank_scale(float(metrics[WEIGHT_METRIC]))
                loss = loss * scale
            grad_norm = backend.micro_step(loss, micro == cfg.grad_accum_steps - 1)
            losses.append(float(loss.detach()))
            for k, v in (metrics or {}).items():
                share = float(v) if k == WEIGHT_METRIC or here.world == 1 else float(v) * scale
                extras[k] = extras.get(k, 0.0) + share / cfg.grad_accum_steps
            n_ex, n_tok = _batch_counts(batch)
            step_examples += n_ex
            step_tokens += n_tok
        if here.world == 1:
            prog.last_loss = sum(losses) / len(losses)
        else:
            step_loss, extras, step_examples, step_tokens = _reduce_step(
                sum(losses) / len(losses), extras, step_examples, step_tokens)
            prog.last_loss = step_loss
        prog.examples += step_examples
        prog.tokens += step_tokens
        prog.step += 1
        prog.window.append(prog.last_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{prog.last_loss:.4f}", lr=f"{lr:.2e}")
        if (cfg.log_every and prog.step % cfg.log_every == 0) or prog.step == cfg.max_steps:
            row = {
                "step": prog.step,
                "train_loss": sum(prog.window) / len(prog.window),
                "lr": lr,
                "grad_norm": grad_norm,
                "examples_seen": prog.examples,
                "tokens_seen": prog.tokens,
            }
            row.update({f"train_{k}": v for k, v in extras.items() if k != "loss"})
            record(row)
            prog.window = []
        if eval_fn is not None and cfg.eval_every and prog.step % cfg.eval_every == 0:
            record({"step": prog.step, **_run_eval(eval_fn, model)})
            prog.last_eval_step = prog.step
        if checkpoint_dir and cfg.checkpoint_every and prog.step % cfg.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, backend, stream, prog, cfg, cfg.keep_checkpoints)
            last_saved = prog.step
    bar.close()
    final = {"train_loss": prog.last_loss}
    if eval_fn is not None:
        if prog.last_eval_step == prog.step:
            final.update({k: v for k, v in prog.history[-1].items() if k.startswith("eval_")})
        else:
            evals = _run_eval(eval_fn, model)
            record({"step": prog.step, **evals})
            prog.last_eval_step = prog.step
            final.update(evals)
    if checkpoint_dir and last_saved != prog.step:
        save_checkpoint(checkpoint_dir, backend, stream, prog, cfg, cfg.keep_checkpoints)
    if stopped:
        record({"step": prog.step, "stopped_by_time_budget": True})
    return TrainResult(
        final_metrics=final,
        history=prog.history,
        steps=prog.step,
        examples_seen=prog.examples,
        tokens_seen=prog.tokens,
        stopped_by_time_budget=stopped,
        elapsed_s=time.perf_counter() - start,
        resumed_from_step=resumed_from,
        comm_s=comm_seconds() - comm_start,
    )
