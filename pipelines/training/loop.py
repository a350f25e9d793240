"""The one training loop every stage (pre-training, SFT, reward model, ...) composes.

Stages supply a model, a map-style dataset, a collate function and a ``loss_fn``; the loop
owns optimisation (AdamW, linear warmup + cosine decay, clipping, gradient accumulation),
seeded data order, evaluation, time budgets and exact resume from checkpoints.

Data contract: ``train_data`` is any sequence supporting ``len`` and ``__getitem__``.
Example indices come from a seeded ``torch.Generator`` permutation that is consumed as one
continuous stream across epochs, so ``batch 4 x accum 1`` and ``batch 2 x accum 2`` see the
same examples per optimizer step. ``collate_fn(list_of_examples) -> batch`` (default:
``torch.utils.data.default_collate``). ``loss_fn(model, batch) -> (loss, {name: float})``
must return the *mean* loss of the micro-batch.

Checkpoints (plain PyTorch mode) live in ``checkpoint_dir/step_XXXXXXXX/`` and contain only
safetensors + JSON: ``model.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``,
``rng.safetensors`` (torch CPU RNG state, sampler generator state and permutation) and
``state.json`` (step, counters, scheduler state, python/numpy RNG, history, config, and the
sha256 of every other file). Each is written to a temporary directory ``.tmp-step_X-PID``,
fsynced (files and folder) and published with ``os.replace`` before older checkpoints are
rotated out. On resume a checkpoint whose files do not match their recorded sha256 (truncated,
overwritten, half-written) is skipped with a warning and the next older one is used; temporary
folders of dead writers are removed. History rows hold no wall times (they end up in tracked
outputs); ``TrainResult.elapsed_s`` carries the run's wall time.
In DeepSpeed mode the engine/optimizer/scheduler state is written by DeepSpeed's own
``save_checkpoint`` (DeepSpeed's torch-serialised format, loaded back only by
``engine.load_checkpoint`` from directories this loop wrote); loop state stays JSON +
safetensors as above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, load_model, save_file, save_model
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from pipelines.atomic import fsync_dir, fsync_tree, pid_alive
from pipelines.training.config import TrainConfig

LossFn = Callable[[Any, Any], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[Any], "dict[str, float]"]

_CKPT_RE = re.compile(r"^step_(\d{8})$")
_TMP_RE = re.compile(r"^\.tmp-step_\d{8}-(\d+)$")
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config


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


# --------------------------------------------------------------------------- helpers


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy (if installed) and torch; request deterministic kernels.

    ``warn_only`` keeps ops without a deterministic implementation usable.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def causal_lm_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """Default ``loss_fn``: mean next-token NLL over labels != -100.

    ``batch`` is a dict with ``input_ids``, optional ``attention_mask`` and ``labels``
    (defaults to ``input_ids``), or a bare LongTensor of packed blocks.
    """
    if torch.is_tensor(batch):
        batch = {"input_ids": batch}
    labels = batch.get("labels", batch["input_ids"])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    n = int((targets != -100).sum())
    if n == 0:  # keep the graph connected so backward() still works
        return logits.sum() * 0.0, {"loss": 0.0, "target_tokens": 0.0}
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    return loss, {"loss": float(loss.detach()), "target_tokens": float(n)}


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


class _IndexStream:
    """Endless stream of dataset indices: seeded permutations, one per epoch."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("train_data is empty")
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.pos = 0
        self.perm = torch.randperm(n, generator=self.gen)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.pos >= self.n:
                self.epoch += 1
                self.pos = 0
                self.perm = torch.randperm(self.n, generator=self.gen)
            m = min(k - len(out), self.n - self.pos)
            out.extend(self.perm[self.pos : self.pos + m].tolist())
            self.pos += m
        return out

    def tensors(self) -> dict:
        return {"sampler_perm": self.perm.clone(), "sampler_generator": self.gen.get_state()}

    def meta(self) -> dict:
        return {"n": self.n, "epoch": self.epoch, "pos": self.pos}

    def restore(self, tensors: dict, meta: dict) -> None:
        if meta["n"] != self.n:
            raise ValueError(f"checkpoint was made for a dataset of {meta['n']} examples, got {self.n}")
        self.perm = tensors["sampler_perm"].clone()
        self.gen.set_state(tensors["sampler_generator"])
        self.epoch, self.pos = meta["epoch"], meta["pos"]


def _python_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss]}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    except ImportError:
        pass
    return state


def _restore_python_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        try:
            import numpy as np

            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        except ImportError:
            pass


def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state_dict into flat tensors + JSON structure."""
    sd = opt.state_dict()
    tensors, state_meta = {}, {}
    for pid, st in sd["state"].items():
        entry = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().clone().contiguous()
                entry[k] = {"tensor": f"state.{pid}.{k}"}
            else:
                entry[k] = {"value": v}
        state_meta[str(pid)] = entry
    groups = []
    for g in sd["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = list(g["betas"])
        groups.append(g)
    return tensors, {"state": state_meta, "param_groups": groups}


def _optimizer_from_files(tensors: dict, meta: dict) -> dict:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {
            k: (tensors[v["tensor"]] if "tensor" in v else v["value"]) for k, v in entry.items()
        }
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _checkpoints_newest_first(checkpoint_dir: Optional[str]) -> list[Path]:
    if not checkpoint_dir or not Path(checkpoint_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(checkpoint_dir).iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_manifest(folder: Path) -> dict:
    """{relative path: sha256} of every file in a checkpoint folder except state.json."""
    return {
        p.relative_to(folder).as_posix(): _sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "state.json"
    }


def _checkpoint_problem(ckpt: Path) -> Optional[str]:
    """Why a checkpoint cannot be resumed from (None when every file matches its recorded sha256)."""
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"state.json unreadable ({exc})"
    files = state.get("files") if isinstance(state, dict) else None
    if not isinstance(files, dict) or not files:
        return "state.json lists no files"
    for rel, expected in files.items():
        path = ckpt / rel
        if not path.is_file():
            return f"{rel} missing"
        if _sha256(path) != expected:
            return f"{rel} does not match its recorded sha256"
    return None


def _latest_checkpoint(checkpoint_dir: Optional[str]) -> Optional[Path]:
    """The newest intact checkpoint; corrupt newer ones are skipped with a warning."""
    for ckpt in _checkpoints_newest_first(checkpoint_dir):
        problem = _checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        log.warning("skipping corrupt checkpoint %s: %s", ckpt, problem)
    return None


def _remove_dead_tmp(root: Path) -> None:
    """Half-written checkpoint folders of writers that have died (SIGKILL, power loss)."""
    for p in root.iterdir():
        m = _TMP_RE.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


# --------------------------------------------------------------------------- backends


class _TorchBackend:
    """Plain PyTorch: AdamW + LambdaLR, manual accumulation and clipping."""

    def __init__(self, model, cfg: TrainConfig):
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
        tensors, meta = _optimizer_to_files(self.optimizer)
        save_file(tensors, str(out / "optimizer.safetensors"))
        _write_json(out / "optimizer.json", meta)
        sched = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        return {"scheduler": sched}

    def load(self, ckpt: Path, state: dict) -> None:
        missing, unexpected = load_model(self.model, str(ckpt / "model.safetensors"))
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {ckpt} does not match model: {missing=} {unexpected=}")
        meta = json.loads((ckpt / "optimizer.json").read_text())
        self.optimizer.load_state_dict(
            _optimizer_from_files(load_file(str(ckpt / "optimizer.safetensors")), meta)
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


def _init_distributed_cpu() -> None:
    """Single-process gloo group unless a launcher already provided the env."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)


class _DeepSpeedBackend:
    """DeepSpeed engine: it owns accumulation, clipping, optimizer and scheduler."""

    def __init__(self, model, cfg: TrainConfig):
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed  # slow import, only when asked for

        if int(cfg.deepspeed.get("zero_stage", 0)) == 3:
            raise ValueError("zero_stage 3 partitions the caller's model; use stages 0-2 here")
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


# --------------------------------------------------------------------------- loop


@dataclass
class _Progress:
    step: int = 0
    examples: int = 0
    tokens: int = 0
    history: list = field(default_factory=list)
    last_loss: float = float("nan")
    window: list = field(default_factory=list)  # step losses since the last logged row
    last_eval_step: Optional[int] = None


def _save_checkpoint(checkpoint_dir, backend, stream, prog, cfg, keep) -> None:
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{prog.step:08d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    extra = backend.save(tmp)
    rng = {"torch_cpu_rng": torch.get_rng_state(), **stream.tensors()}
    save_file(rng, str(tmp / "rng.safetensors"))
    state = {
        "step": prog.step,
        "examples_seen": prog.examples,
        "tokens_seen": prog.tokens,
        "sampler": stream.meta(),
        "rng": _python_rng_state(),
        "history": prog.history,
        "loop": {"last_loss": prog.last_loss, "window": prog.window, "last_eval_step": prog.last_eval_step},
        "config": cfg.to_dict(),
        "files": _file_manifest(tmp),
        **extra,
    }
    _write_json(tmp / "state.json", state)  # written last: marks the checkpoint complete
    fsync_tree(tmp)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)  # the rename is durable before any older checkpoint goes
    if keep and keep > 0:
        done = sorted(p for p in root.iterdir() if _CKPT_RE.match(p.name))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(ckpt: Path, backend, stream, prog) -> None:
    state = json.loads((ckpt / "state.json").read_text())
    backend.load(ckpt, state)
    rng = load_file(str(ckpt / "rng.safetensors"))
    stream.restore(rng, state["sampler"])
    torch.set_rng_state(rng["torch_cpu_rng"])
    _restore_python_rng(state["rng"])
    prog.step = state["step"]
    prog.examples = state["examples_seen"]
    prog.tokens = state["tokens_seen"]
    prog.history = state["history"]
    loop = state["loop"]
    prog.last_loss = float(loop["last_loss"])
    prog.window = [float(v) for v in loop["window"]]
    prog.last_eval_step = loop["last_eval_step"]


def _run_eval(eval_fn, model) -> dict:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        metrics = {f"eval_{k}": float(v) for k, v in eval_fn(model).items()}
    model.train(was_training)
    return metrics


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
) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps and report.

    Resumes from the newest complete checkpoint in ``checkpoint_dir`` if there is one.
    A run stopped by ``time_budget_s`` saves a checkpoint (when a dir is given), so calling
    ``train`` again continues it.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    collate = collate_fn or default_collate
    set_seed(cfg.seed)
    stream = _IndexStream(len(train_data), cfg.seed)
    backend = make_backend(model, cfg)
    prog = _Progress()
    resumed_from = None
    if checkpoint_dir and Path(checkpoint_dir).is_dir():
        _remove_dead_tmp(Path(checkpoint_dir))
    latest = _latest_checkpoint(checkpoint_dir)
    if latest is not None:
        _load_checkpoint(latest, backend, stream, prog)
        resumed_from = prog.step
    last_saved = prog.step if latest is not None else None
    model.train()
    start = time.perf_counter()
    stopped = False
    bar = tqdm(
        total=cfg.max_steps, initial=prog.step, disable=not progress, file=sys.stderr, desc="train",
        dynamic_ncols=True,
    )
    while prog.step < cfg.max_steps:
        if cfg.time_budget_s is not None and time.perf_counter() - start >= cfg.time_budget_s:
            stopped = True
            break
        lr = backend.current_lr()
        losses, extras = [], {}
        grad_norm = None
        for micro in range(cfg.grad_accum_steps):
            batch = collate([train_data[i] for i in stream.take(cfg.batch_size)])
            loss, metrics = loss_fn(backend.module, batch)
            grad_norm = backend.micro_step(loss, micro == cfg.grad_accum_steps - 1)
            losses.append(float(loss.detach()))
            for k, v in (metrics or {}).items():
                extras[k] = extras.get(k, 0.0) + float(v) / cfg.grad_accum_steps
            n_ex, n_tok = _batch_counts(batch)
            prog.examples += n_ex
            prog.tokens += n_tok
        prog.step += 1
        prog.last_loss = sum(losses) / len(losses)
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
            _record(prog.history, row)
            prog.window = []
        if eval_fn is not None and cfg.eval_every and prog.step % cfg.eval_every == 0:
            _record(prog.history, {"step": prog.step, **_run_eval(eval_fn, model)})
            prog.last_eval_step = prog.step
        if checkpoint_dir and cfg.checkpoint_every and prog.step % cfg.checkpoint_every == 0:
            _save_checkpoint(checkpoint_dir, backend, stream, prog, cfg, cfg.keep_checkpoints)
            last_saved = prog.step
    bar.close()
    final = {"train_loss": prog.last_loss}
    if eval_fn is not None:
        if prog.last_eval_step == prog.step:
            final.update({k: v for k, v in prog.history[-1].items() if k.startswith("eval_")})
        else:
            evals = _run_eval(eval_fn, model)
            _record(prog.history, {"step": prog.step, **evals})
            prog.last_eval_step = prog.step
            final.update(evals)
    if checkpoint_dir and last_saved != prog.step:
        _save_checkpoint(checkpoint_dir, backend, stream, prog, cfg, cfg.keep_checkpoints)
    if stopped:
        _record(prog.history, {"step": prog.step, "stopped_by_time_budget": True})
    return TrainResult(
        final_metrics=final,
        history=prog.history,
        steps=prog.step,
        examples_seen=prog.examples,
        tokens_seen=prog.tokens,
        stopped_by_time_budget=stopped,
        elapsed_s=time.perf_counter() - start,
        resumed_from_step=resumed_from,
    )
