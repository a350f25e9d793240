"""RoVRM's recipe: a visual reward model from the policy, trained phase by phase, and its variants.

A variant names where its auxiliary (text, caption) pairs come from (a selection method of
`visual_select`, or none) and which phases it trains, in order. Each phase is one run of the
training loop on its pairs with its own `TrainConfig`; the model carries over between phases.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

from pipelines.models.reward.visual import VisualRewardModel, pairwise_loss
from pipelines.models.vlm.encoding import collate_pairs
from pipelines.models.vlm.llava import load_vlm
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import ranks
from pipelines.training.loop import train
from pipelines.training.rng import set_seed

PHASES = ("text", "caption", "visual")
# variant -> (selection method for the auxiliary data, phases in training order)
VARIANTS = {
    "rovrm": ("ot", ("text", "caption", "visual")),
    "visual_only": (None, ("visual",)),
    "no_text": ("ot", ("caption", "visual")),
    "no_caption": ("ot", ("text", "visual")),
    "random": ("random", ("text", "caption", "visual")),
    "centroid": ("centroid", ("text", "caption", "visual")),
    "all_data": ("all", ("text", "caption", "visual")),
}
MAIN_VARIANTS = ("rovrm", "visual_only")  # trained and published by their own stages; the rest are ablations
POOL_FILES = {"caption": "caption_pool.jsonl", "text": "text_pool.jsonl"}  # auxiliary pools in the world folder


def digest(*parts: object) -> str:
    """A short stable hash of JSON-able parts (checkpoint keys: resume only the very same run)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(model_dir: Path) -> str:
    """One digest of every safetensors file of a checkpoint (all shards of a large one)."""
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights")
    return digest(*(hashlib.md5(s.read_bytes()).hexdigest() for s in shards))


def variant_phases(variant: str, visual_train: list[dict], selections: Mapping | None,
                   pools: Mapping[str, list[dict]]) -> list[tuple[str, list[dict]]]:
    """(phase, training pairs) of a variant: the visual pairs, and the pool pairs its selection kept."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown visual reward-model variant {variant!r}; known: {sorted(VARIANTS)}")
    method, phases = VARIANTS[variant]
    out = []
    for phase in phases:
        if phase == "visual":
            out.append((phase, visual_train))
            continue
        keep = set(selections[method][phase])
        out.append((phase, [r for r in pools[phase] if r["id"] in keep]))
    return out


def phases_needed(variants: Sequence[str]) -> list[str]:
    """Every phase some variant trains, in training order (whose train blocks must be valid)."""
    used = {p for v in variants for p in VARIANTS[v][1]}
    return [p for p in PHASES if p in used]


@dataclass
class TrainedRM:
    rm: VisualRewardModel
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # phase -> wall seconds (a machine fact, not a metric)
    checkpoints: list[Path] = field(default_factory=list)  # remove once the model is saved


def train_visual_rm(policy_dir: Path, phases: Sequence[tuple[str, list[dict]]], images: Callable,
                    configs: Mapping[str, TrainConfig], max_length: int, seed: int, tag: str,
                    checkpoint_dir: Callable[[str], Path], likelihood_anchor: bool = False) -> TrainedRM:
    """A reward model from the policy in `policy_dir`, trained on each (phase, records) in order.

    `likelihood_anchor`: the reward adds the model's own mean response log-probability and the head
    starts at zero (`VisualRewardModel`). `checkpoint_dir(key)` gives a resumable folder per phase; a
    phase resumes only a run with the same policy, readout, config, data and every earlier phase. The
    caller removes `checkpoints` once the model is saved, so a failure after training resumes instead
    of retraining.
    """
    set_seed(seed)
    vlm, tokenizer = load_vlm(str(policy_dir))
    rm = VisualRewardModel(vlm, tokenizer, int(max_length), seed=seed, likelihood_anchor=likelihood_anchor)
    out = TrainedRM(rm, summary={"phases": [name for name, _ in phases], "likelihood_anchor": bool(likelihood_anchor)})
    offset = 0
    key = digest(tag, weights_digest(policy_dir), max_length, bool(likelihood_anchor))
    for name, records in phases:
        if name not in PHASES:
            raise ValueError(f"unknown RoVRM phase {name!r}; phases are {PHASES}")
        if not records:
            raise ValueError(f"phase {name!r} of {tag} has no training pairs")
        cfg = configs[name]
        key = digest(key, name, cfg.to_dict(), digest(records))
        ckpt = checkpoint_dir(key)
        out.checkpoints.append(ckpt)
        result = train(rm, rm.examples(records, images), pairwise_loss, cfg, checkpoint_dir=str(ckpt),
                       collate_fn=partial(collate_pairs, pad_id=rm.pad_id))
        out.history += [{**row, "step": row["step"] + offset, "phase_index": PHASES.index(name)}
                        for row in result.history]
        offset += result.steps
        out.seconds[name] = round(result.elapsed_s, 2)
        out.summary.update({f"{name}/pairs": len(records), f"{name}/steps": result.steps,
                            f"{name}/stopped_by_time_budget": result.stopped_by_time_budget})
    out.summary["train_steps"] = offset
    out.summary["stopped_by_time_budget"] = any(out.summary[f"{n}/stopped_by_time_budget"] for n, _ in phases)
    rm.eval()
    return out


def remove_checkpoints(folders: Sequence[Path]) -> None:
    """Remove finished phases' checkpoints; on the main rank only, which writes them."""
    if not ranks().is_main:
        return
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
