"""Checkpoints of the training loop: write, verify, rotate, resume.

A checkpoint lives in ``checkpoint_dir/step_XXXXXXXX/`` and contains only safetensors + JSON:
what the backend writes (plain PyTorch: ``model.safetensors``, ``optimizer.safetensors`` +
``optimizer.json``), ``rng.safetensors`` (torch CPU RNG state, sampler generator state and
permutation) and ``state.json`` (step, counters, scheduler state, python/numpy RNG, history,
config, and the sha256 of every other file). Each is written to a temporary directory
``.tmp-step_X-PID``, fsynced (files and folder) and published with ``os.replace`` before older
checkpoints are rotated out. On resume a checkpoint whose files do not match their recorded sha256
(truncated, overwritten, half-written) is skipped with a warning and the next older one is used;
temporary folders of dead writers are removed. History rows hold no wall times (they end up in
tracked outputs).

With several ranks every rank joins a save: they share one temporary folder (named after rank 0's
process id, which rank 0 broadcasts), the backend writes there from every rank that holds state
of its own (DeepSpeed's ZeRO partitions) or from rank 0 alone (the torch backend: the same state
on every rank), rank 0 adds the RNG states of every rank and the loop's own files once all ranks
are done, publishes the folder, and a final barrier keeps ranks from racing ahead of it. On resume
every rank restores its own RNG states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from pipelines.atomic import fsync_dir, fsync_tree, pid_alive
from pipelines.training.distributed import barrier, broadcast, gather, ranks
from pipelines.training.rng import python_rng_state, restore_python_rng

_CKPT_RE = re.compile(r"^step_(\d{8})$")
_TMP_RE = re.compile(r"^\.tmp-step_\d{8}-(\d+)$")
log = logging.getLogger(__name__)


@dataclass
class Progress:
    """The loop's counters: everything besides model, optimizer and RNG that a resume restores."""

    step: int = 0
    examples: int = 0
    tokens: int = 0
    history: list = field(default_factory=list)
    last_loss: float = float("nan")
    window: list = field(default_factory=list)  # step losses since the last logged row
    last_eval_step: Optional[int] = None


def write_json(path: Path, obj: Any) -> None:
    """A checkpoint's JSON file (the folder as a whole is published atomically, not each file)."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def _with_betas_as(kind, groups: list) -> list:
    """Copies of optimizer param groups with `betas` as `kind` (list for JSON, tuple for torch)."""
    out = []
    for g in groups:
        g = dict(g)
        if "betas" in g:
            g["betas"] = kind(g["betas"])
        out.append(g)
    return out


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
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
    return tensors, {"state": state_meta, "param_groups": _with_betas_as(list, sd["param_groups"])}


def optimizer_from_files(tensors: dict, meta: dict) -> dict:
    """Inverse of `optimizer_to_files`: an optimizer state_dict."""
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {
            k: (tensors[v["tensor"]] if "tensor" in v else v["value"]) for k, v in entry.items()
        }
    return {"state": state, "param_groups": _with_betas_as(tuple, meta["param_groups"])}


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


def latest_checkpoint(checkpoint_dir: Optional[str]) -> Optional[Path]:
    """The newest intact checkpoint; corrupt newer ones are skipped with a warning."""
    for ckpt in _checkpoints_newest_first(checkpoint_dir):
        problem = _checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        log.warning("skipping corrupt checkpoint %s: %s", ckpt, problem)
    return None


def remove_dead_tmp(root: Path) -> None:
    """Half-written checkpoint folders of writers that have died (SIGKILL, power loss)."""
    for p in root.iterdir():
        m = _TMP_RE.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(checkpoint_dir, backend, stream, prog: Progress, cfg, keep) -> None:
    """Write ``step_<prog.step>`` (backend files, RNG, ``state.json`` last), publish it, keep the newest ``keep``.

    Every rank calls it (see the module docstring); with one process it is a plain save.
    """
    here = ranks()
    root = Path(checkpoint_dir)
    name = f"step_{prog.step:08d}"
    tmp = root / f".tmp-{name}-{broadcast(os.getpid())}"
    if here.is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier()
    extra = backend.save(tmp) if (here.is_main or backend.saves_on_every_rank) else {}
    torch_states = gather([torch.get_rng_state()])
    python_states = gather([python_rng_state()])
    barrier()  # every rank's files are in tmp before rank 0 lists and publishes them
    if here.is_main:
        rng = {"torch_cpu_rng": torch_states[0], **stream.tensors()}
        rng.update({f"torch_cpu_rng_rank{r}": state for r, state in enumerate(torch_states) if r > 0})
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {
            "step": prog.step,
            "examples_seen": prog.examples,
            "tokens_seen": prog.tokens,
            "sampler": stream.meta(),
            "rng": python_states[0],
            "history": prog.history,
            "loop": {"last_loss": prog.last_loss, "window": prog.window, "last_eval_step": prog.last_eval_step},
            "config": cfg.to_dict(),
            "files": _file_manifest(tmp),
            **extra,
        }
        if here.world > 1:
            state.update(world=here.world, rank_rng=python_states[1:])
        write_json(tmp / "state.json", state)  # written last: marks the checkpoint complete
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
    barrier()


def load_checkpoint(ckpt: Path, backend, stream, prog: Progress) -> None:
    """Restore backend, sampler, torch/python/numpy RNG and the loop counters from ``ckpt``."""
    state = json.loads((ckpt / "state.json").read_text())
    here = ranks()
    saved_world = int(state.get("world", 1))
    if saved_world != here.world:
        log.warning("resuming %s, written by %d rank(s), on %d: the global batch changes from here on",
                    ckpt, saved_world, here.world)
    backend.load(ckpt, state)
    rng = load_file(str(ckpt / "rng.safetensors"))
    stream.restore(rng, state["sampler"])
    own = here.rank if here.rank < saved_world else 0
    torch.set_rng_state(rng[f"torch_cpu_rng_rank{own}"] if own > 0 else rng["torch_cpu_rng"])
    restore_python_rng(state["rank_rng"][own - 1] if own > 0 else state["rng"])
    prog.step = state["step"]
    prog.examples = state["examples_seen"]
    prog.tokens = state["tokens_seen"]
    prog.history = state["history"]
    loop = state["loop"]
    prog.last_loss = float(loop["last_loss"])
    prog.window = [float(v) for v in loop["window"]]
    prog.last_eval_step = loop["last_eval_step"]
