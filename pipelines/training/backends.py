"""Optimisation backends of the training loop: the same AdamW, schedule and clipping two ways.

`make_backend` picks plain PyTorch (manual gradient accumulation and clipping) or, when
``cfg.deepspeed`` is set, a DeepSpeed engine that owns accumulation, clipping, optimizer and
scheduler. Both expose ``module`` (what to call forward on), ``current_lr()``,
``micro_step(loss, is_boundary)`` and ``save(folder) -> extra state`` / ``load(folder, state)``.
In DeepSpeed mode the engine/optimizer/scheduler state is written by DeepSpeed's own
``save_checkpoint`` (DeepSpeed's torch-serialised format, loaded back only by
``engine.load_checkpoint`` from directories this loop wrote); the loop's own state stays JSON +
safetensors (pipelines/training/checkpoints.py).

Several ranks (a stage under torchrun, pipelines/training/distributed.py): both backends average
gradients over ranks before clipping and stepping, so every rank holds the same weights after each
optimizer step. The torch backend starts every rank from rank 0's weights and averages the
gradients itself at the accumulation boundary (`distributed.average_gradients`) instead of
wrapping the model in DDP: DDP only reduces what its wrapper's `forward` saw, and loss functions
here call model methods (`model.loss(batch)` in speech) or sub-modules (GRAM's stage-1 loss calls
the causal LM inside the reward model, leaving the head without a gradient), which a DDP wrapper
would either not expose or not reduce. The DeepSpeed engine reduces gradients through hooks it
puts on the parameters at `initialize` (ZeRO 0: one all-reduce at the boundary; ZeRO 1/2: reduce
into each rank's optimizer partition), which do not depend on `forward` either. ZeRO 3 is refused:
it partitions the parameters themselves, so every read of a weight outside the engine's forward
(saving with safetensors, evaluation and generation on the caller's model, reward heads read
directly) would have to run inside `deepspeed.zero.GatheredParameters`, and saving would need the
engine's consolidated 16-bit state dict; none of the stages do that yet.
`saves_on_every_rank` tells the loop who writes a checkpoint: DeepSpeed's `save_checkpoint` is a
collective (each ZeRO rank writes its own optimizer partition), the torch backend's state is the
same on every rank and rank 0 alone writes it.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from pipelines.training.checkpoints import optimizer_from_files, optimizer_to_files, write_json
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import average_gradients, broadcast_module, init as init_ranks


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _TorchBackend:
    """Plain PyTorch: AdamW + LambdaLR, manual accumulation and clipping, gradients averaged over ranks."""

    saves_on_every_rank = False

    def __init__(self, model, cfg: TrainConfig):
        init_ranks()
        broadcast_module(model)  # no-op for one process
        self.model = model
        self.cfg = cfg
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio),
        )
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def module(self):
        return self.model

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def micro_step(self, loss: torch.Tensor, is_boundary: bool) -> Optional[float]:
        (loss / self.cfg.grad_accum_steps).backward()
        if not is_boundary:
            return None
        average_gradients(list(self.model.parameters()))  # no-op for one process
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.max_grad_norm and self.cfg.max_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        else:
            norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def save(self, out: Path) -> dict:
        save_model(self.model, str(out / "model.safetensors"))
        tensors, meta = optimizer_to_files(self.optimizer)
        save_file(tensors, str(out / "optimizer.safetensors"))
        write_json(out / "optimizer.json", meta)
        sched = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        return {"scheduler": sched}

    def load(self, ckpt: Path, state: dict) -> None:
        missing, unexpected = load_model(self.model, str(ckpt / "model.safetensors"))
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {ckpt} does not match model: {missing=} {unexpected=}")
        meta = json.loads((ckpt / "optimizer.json").read_text())
        self.optimizer.load_state_dict(
            optimizer_from_files(load_file(str(ckpt / "optimizer.safetensors")), meta)
        )
        sched = dict(state["scheduler"])
        sched["lr_lambdas"] = [None] * len(self.optimizer.param_groups)
        self.scheduler.load_state_dict(sched)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_config(cfg: TrainConfig) -> dict:
    """Translate a TrainConfig into a DeepSpeed config dict (single source of truth)."""
    ds = cfg.deepspeed or {}
    stage = int(ds.get("zero_stage", 0))
    offload = bool(ds.get("offload_optimizer", False))
    if offload and stage == 0:
        raise ValueError("offload_optimizer needs zero_stage >= 1")
    zero: dict = {"stage": stage}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu"}
    opt_params = {"lr": cfg.lr, "betas": list(cfg.betas), "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    if not offload:
        opt_params["torch_adam"] = True  # plain torch AdamW; no fused CUDA kernel needed
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "gradient_clipping": float(cfg.max_grad_norm or 0.0),
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": opt_params},
        "bf16": {"enabled": bool(ds.get("bf16", False))},
        "fp16": {"enabled": False},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def import_deepspeed():
    """DeepSpeed, or a clear error: it is the `deepspeed` extra (`make setup` installs it)."""
    try:
        import deepspeed
    except ModuleNotFoundError as exc:
        raise ValueError("a training block sets deepspeed, but DeepSpeed is not installed: "
                         "pip install 'alignflow[deepspeed]' (make setup installs it)") from exc
    return deepspeed


def _init_distributed_cpu() -> None:
    """Single-process gloo group unless a launcher already provided the env."""
    deepspeed = import_deepspeed()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if os.environ["WORLD_SIZE"] == "1":
        # one process: an in-memory store, so there is no free TCP port to find and lose to another process
        # between finding and binding it (EADDRINUSE under load)
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    else:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    deepspeed.init_distributed(dist_backend=backend)  # wraps a group that is already up


class _DeepSpeedBackend:
    """DeepSpeed engine: it owns accumulation, clipping, optimizer, scheduler and the gradient reduction."""

    saves_on_every_rank = True

    def __init__(self, model, cfg: TrainConfig):
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        deepspeed = import_deepspeed()  # slow import, only when asked for

        if int(cfg.deepspeed.get("zero_stage", 0)) == 3:
            raise ValueError("deepspeed zero_stage 3 partitions the caller's model (see pipelines/training/"
                             "backends.py); use zero_stage 0-2")
        _init_distributed_cpu()
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.cfg = cfg
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=groups,
            config=deepspeed_config(cfg),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
            ),
        )

    @property
    def module(self):
        return self.engine

    def current_lr(self) -> float:
        return self.engine.get_lr()[0]

    def micro_step(self, loss: torch.Tensor, is_boundary: bool) -> Optional[float]:
        self.engine.backward(loss)  # scales by 1/grad_accum_steps itself
        self.engine.step()  # only updates weights at the accumulation boundary
        if not is_boundary:
            return None
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, out: Path) -> dict:
        self.engine.save_checkpoint(str(out), tag="deepspeed")
        return {}

    def load(self, ckpt: Path, state: dict) -> None:
        path, _ = self.engine.load_checkpoint(str(ckpt), tag="deepspeed")
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint from {ckpt}")


def make_backend(model, cfg: TrainConfig):
    """The optimiser backend ``train`` uses, for loops that are not one pass over a fixed dataset
    (PPO): the same AdamW, warm-up + cosine schedule and clipping, DeepSpeed when ``cfg.deepspeed``
    is set. ``backend.module`` is what to call forward on; ``micro_step(loss, is_boundary)`` steps."""
    return _DeepSpeedBackend(model, cfg) if cfg.deepspeed else _TorchBackend(model, cfg)
