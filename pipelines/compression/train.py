"""Fit only the LiSA parameters of a model whose base weights stay frozen.

Why separate: the base model is already trained; LiSA only has to learn to rebuild each replaced
layer's scores, which takes few steps and few parameters.

Loss = lm_weight * LM loss + distill_weight * attention distillation, where

* LM loss is `objective`'s: next-token CE for Llama, masked-LM CE for BERT (``BertForMaskedLM``
  and a mask token id; a bare ``BertModel`` can only be trained with distillation, lm_weight=0);
* distillation compares, for every replaced layer, the LiSA layer's attention probabilities with
  the teacher's (the original model, same layer index, same inputs): "kl" = KL(teacher || LiSA)
  summed over keys, "mse" = squared error summed over keys; both averaged over heads, valid
  (non-padding) query rows and replaced layers.

Data: a list of token-id sequences, right-padded into batches, reshuffled every epoch with a
generator seeded by ``seed``; AdamW for `max_steps` steps (the length of every training block in
this project is named `max_steps`; `lisa_config_from_block` builds the config from a params block). The model runs in eval mode
(dropout off), so a fixed seed gives identical results on CPU. tqdm progress goes to stderr.

Optimisation is the training loop's backend (`make_backend`: AdamW at a constant lr, clipping, and
the gradient average over ranks), not the loop itself: LiSA keeps its own epoch-wise batch order.
Weight decay follows the backend's rule (matrices only, never the 1-D biases). Under several ranks
(`torchrun`) `batch_size` is per rank, as in the loop: at step s rank r trains on batch s * world + r
of the one-process batch stream (its masked-LM seed too), and the backend averages the gradients,
so one step sees `world` batches. The logged losses are means over ranks.
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from pipelines.compression.lisa import lisa_parameters, recording_attention
from pipelines.compression.objective import forward, lm_inputs, make_batches, nll_from_logits, pad_id
from pipelines.training.backends import make_backend
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import all_reduce_mean, ranks

DISTILL_LOSSES = ("kl", "mse")


@dataclass
class LisaTrainConfig:
    """How the LiSA parameters are fitted; checked when built, so a bad value fails before any training."""

    max_steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    lm_weight: float = 1.0
    distill_weight: float = 0.0
    distill_loss: str = "kl"
    mask_token_id: int | None = None  # BERT masked-LM only
    progress: bool = True
    processes: int = 1  # ranks the stage asks the launcher for (torchrun); batch_size is per rank

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.batch_size < 1:
            raise ValueError(f"max_steps >= 0 and batch_size >= 1 required, got {self.max_steps}, {self.batch_size}")
        if self.lm_weight < 0 or self.distill_weight < 0:
            raise ValueError("lm_weight and distill_weight must be >= 0")
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ValueError(f"processes must be an integer >= 1, got {self.processes!r}")
        if self.distill_loss not in DISTILL_LOSSES:
            raise ValueError(f"distill_loss must be one of {DISTILL_LOSSES}, got {self.distill_loss!r}")


def lisa_config_from_block(block: Mapping, seed: int, where: str, **derived) -> LisaTrainConfig:
    """`block` (a params `train:` mapping of LisaTrainConfig fields) seeded with `seed`.

    `derived` carries values known only at run time (mask token id, progress bars), given here and
    never patched in later; `where` is the params key named in errors ("lisa.train"). Both loss
    weights 0 is refused here: there would be nothing to train.
    """
    if not isinstance(block, Mapping):
        raise ValueError(f"params.yaml: {where}: expected a mapping, got {type(block).__name__}")
    names = {f.name for f in dataclasses.fields(LisaTrainConfig)} - {"seed", "progress", "mask_token_id"}
    unknown = sorted(set(block) - names)
    if unknown:
        raise ValueError(f"params.yaml: {where}: unknown keys {unknown}; allowed: {sorted(names)}")
    try:
        cfg = LisaTrainConfig(**{**block, **derived, "seed": int(seed)})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params.yaml: {where}: {exc}") from exc
    if cfg.lm_weight + cfg.distill_weight <= 0:
        raise ValueError(f"params.yaml: {where}: lm_weight and distill_weight must not both be 0")
    return cfg


def attention_distillation(student: dict, teacher: dict, layers: Sequence[int], attention_mask: torch.Tensor,
                           kind: str = "kl") -> torch.Tensor:
    """Mean over ``layers`` of the per-row divergence between captured teacher and student probs."""
    if kind not in DISTILL_LOSSES:
        raise ValueError(f"distill_loss must be one of {DISTILL_LOSSES}, got {kind!r}")
    rows = attention_mask.to(torch.float32)[:, None, :]  # (B, 1, T) valid query rows
    total = 0.0
    for layer in layers:
        p_t, p_s = teacher[layer]["probs"].float(), student[layer]["probs"].float()
        if kind == "kl":
            log_ratio = torch.log(p_t.clamp_min(1e-30)) - torch.log(p_s.clamp_min(1e-30))
            per_row = torch.where(p_t > 0, p_t * log_ratio, torch.zeros_like(p_t)).sum(-1)
        else:
            per_row = (p_t - p_s).pow(2).sum(-1)
        total = total + (per_row * rows).sum() / (rows.sum() * per_row.shape[1])
    return total / len(layers)


def _backend_config(cfg: LisaTrainConfig) -> TrainConfig:
    """The backend's view of a LiSA run: AdamW with torch's defaults, no warm-up, constant lr."""
    return TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=0, max_steps=max(cfg.max_steps, 1),
                       min_lr_ratio=1.0, batch_size=cfg.batch_size, max_grad_norm=cfg.max_grad_norm,
                       betas=(0.9, 0.999), eps=1e-8, seed=cfg.seed)


def train_lisa(model: nn.Module, sequences: Sequence[Sequence[int]], config: LisaTrainConfig | None = None,
               teacher: nn.Module | None = None) -> dict:
    """Train the LiSA parameters of ``model`` in place; returns {"loss", "lm", "distill"}: per-step
    floats. A model without trainable LiSA parameters ("share" mode) returns empty lists."""
    cfg = config or LisaTrainConfig()
    params = [p for _, p in lisa_parameters(model) if p.requires_grad]
    history = {"loss": [], "lm": [], "distill": []}
    if not params:
        return history
    if cfg.lm_weight <= 0 and cfg.distill_weight <= 0:
        raise ValueError("nothing to train: lm_weight and distill_weight are both 0")
    if cfg.distill_weight > 0 and teacher is None:
        raise ValueError("distill_weight > 0 needs the original model as teacher")
    layers = model.lisa_state.layers
    torch.manual_seed(cfg.seed)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    here = ranks()
    backend = make_backend(model, _backend_config(cfg))
    was_training = model.training
    model.eval()
    if teacher is not None:
        teacher.eval()
    batches: list = []
    try:
        for step in tqdm(range(cfg.max_steps), desc="lisa", file=sys.stderr, disable=not cfg.progress):
            for position in range(here.world):  # this rank's batch of the step's `world` batches
                if not batches:
                    order = torch.randperm(len(sequences), generator=order_gen).tolist()
                    batches = make_batches(sequences, cfg.batch_size, pad_id(model), order)[::-1]
                batch = batches.pop()
                if position == here.rank:
                    ids, mask = batch
            stream_step = step * here.world + here.rank
            inputs, targets = lm_inputs(model, ids, mask, mask_token_id=cfg.mask_token_id,
                                        seed=cfg.seed + stream_step) if cfg.lm_weight > 0 else (ids, None)
            distill = cfg.distill_weight > 0
            with recording_attention(model, all_layers=False) if distill else nullcontext() as student:
                output = forward(model, inputs, mask)
            loss = lm = torch.zeros(())
            if cfg.lm_weight > 0:
                nll, count = nll_from_logits(model, output, targets)
                lm = nll / max(count, 1)
                loss = loss + cfg.lm_weight * lm
            kd = torch.zeros(())
            if distill:
                with torch.no_grad(), recording_attention(teacher) as captured:
                    forward(teacher, inputs, mask)
                kd = attention_distillation(student, captured, layers, mask, cfg.distill_loss)
                loss = loss + cfg.distill_weight * kd
            backend.micro_step(loss, True)
            row = {"loss": loss.item(), "lm": lm.item(), "distill": kd.item()}
            if here.world > 1:
                row = all_reduce_mean(row)
            for key in history:
                history[key].append(row[key])
    finally:
        model.train(was_training)
    return history
