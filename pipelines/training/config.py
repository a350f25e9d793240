"""One training block of params.yaml -> the training loop's config, the same way for every stage.

Every stage's `train:` block has the same shape: the fields of `TrainConfig`, with training
length always named `max_steps` (optimizer steps). `config_from_block` is the only place a
block becomes a config: the stage's seed is added, unknown keys are rejected with the block's
params.yaml key in the message, and the result is never patched afterwards.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional

_DS_KEYS = {"zero_stage", "offload_optimizer", "bf16"}


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all steps are optimizer steps)."""

    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 0
    max_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    batch_size: int = 8  # micro-batch size
    grad_accum_steps: int = 1
    max_grad_norm: Optional[float] = 1.0  # None or <= 0 disables clipping
    eval_every: int = 0  # 0: evaluate only at the end
    log_every: int = 10
    checkpoint_every: int = 0  # 0: checkpoint only at the end (if checkpoint_dir)
    keep_checkpoints: int = 2
    seed: int = 0
    time_budget_s: Optional[float] = None  # wall clock of this call to train()
    deepspeed: Optional[dict] = None  # {"zero_stage": int, "offload_optimizer": bool, "bf16": bool}
    # processes (ranks) the stage asks the launcher for; batch_size is per rank, so the global batch
    # is batch_size * grad_accum_steps * world (alignflow/runtime/launch.py starts them)
    processes: int = 1

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if self.max_steps < 0 or self.batch_size < 1 or self.grad_accum_steps < 1:
            raise ValueError("max_steps >= 0, batch_size >= 1 and grad_accum_steps >= 1 required")
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ValueError(f"processes must be an integer >= 1, got {self.processes!r}")
        if self.deepspeed is not None:
            unknown = sorted(set(self.deepspeed) - _DS_KEYS)
            if unknown:
                raise ValueError(f"unknown deepspeed config keys: {unknown}; allowed: {sorted(_DS_KEYS)}")
            stage = int(self.deepspeed.get("zero_stage", 0))
            if stage not in (0, 1, 2, 3):
                raise ValueError(f"deepspeed zero_stage must be 0-3, got {stage}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a plain dict, rejecting keys the dataclass does not define."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def config_from_block(block: Mapping, seed: int, where: str, **derived) -> TrainConfig:
    """`block` (a params `train:` mapping) as a TrainConfig seeded with `seed`.

    `derived` carries values a stage computes from its data (given here, never patched in later);
    `where` is the params.yaml key named in errors ("gram.train").
    """
    if not isinstance(block, Mapping):
        raise ValueError(f"params.yaml: {where}: expected a mapping of training settings, got {type(block).__name__}")
    try:
        return TrainConfig.from_dict({**block, **derived, "seed": int(seed)})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params.yaml: {where}: {exc}") from exc
