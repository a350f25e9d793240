"""What the visual (RoVRM) stages share: where the data lives, images, phase training and RM evaluation."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import evaluate_pairs, plot_reliability
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from pipelines.visual.encoding import collate_pairs
from pipelines.visual.oracle import grade
from pipelines.visual.render import load_image
from pipelines.visual.reward import VisualRewardModel, pairwise_loss
from pipelines.visual.scene import Scene
from pipelines.visual.vlm import load_vlm
from stages.common import checkpoint_key

WORLD = "data/visual"
SELECT = "data/visual_select"
POLICY = "models/visual_policy/model"
PHASES = ("text", "caption", "visual")
TEST_SPLIT = "test_visual"


def world_records(ctx: StageContext, name: str) -> list[dict]:
    return read_jsonl(ctx.root / WORLD / name)


class ImageStore:
    """Loads each record's image once (relative to the data folder that holds the records)."""

    def __init__(self, root: Path, size: int):
        self.root, self.size = Path(root), int(size)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, record: dict) -> np.ndarray | None:
        rel = record.get("image")
        if not rel:
            return None
        if rel not in self._cache:
            path = Path(rel) if Path(rel).is_absolute() else self.root / rel
            self._cache[rel] = load_image(path, self.size)
        return self._cache[rel]


def weights_md5(model_dir: Path) -> str:
    """One digest of every safetensors file of a checkpoint (all shards of a large one)."""
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights")
    return checkpoint_key(*(file_md5(s) for s in shards))


def records_md5(records: Sequence[dict]) -> str:
    return hashlib.md5(json.dumps(records, sort_keys=True).encode()).hexdigest()


def phase_config(ctx: StageContext, phase: str, n_pairs: int) -> TrainConfig:
    """A phase's TrainConfig: `epochs` over its data become optimiser steps, so data size sets the cost."""
    key = f"visual.rm.phases.{phase}"
    block = dict(ctx.block("visual")["rm"]["phases"].get(phase) or {})
    try:
        epochs = float(block.pop("epochs"))
        cfg = TrainConfig.from_dict({**block, "seed": ctx.seed})
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: {key}: {exc!r}") from exc
    cfg.max_steps = max(1, math.ceil(epochs * n_pairs / (cfg.batch_size * cfg.grad_accum_steps)))
    cfg.warmup_steps = min(cfg.warmup_steps, cfg.max_steps // 2)
    return cfg


def train_visual_rm(ctx: StageContext, phases: Sequence[tuple[str, list[dict]]], images: ImageStore,
                    tag: str) -> tuple[VisualRewardModel, list[dict], dict, list[Path]]:
    """A reward model from the visual policy, trained on each (phase, records) in order.

    Returns (rm, history, summary, checkpoint folders): the caller removes the folders once the model
    is saved, so a failure after training resumes instead of retraining.
    """
    p = ctx.block("visual")["rm"]
    set_seed(ctx.seed)
    vlm, tokenizer = load_vlm(str(ctx.root / POLICY))
    rm = VisualRewardModel(vlm, tokenizer, int(p["max_length"]), seed=ctx.seed)
    history: list[dict] = []
    summary: dict = {"phases": [name for name, _ in phases]}
    offset = 0
    # a phase resumes only a run with the same policy, params, data and every earlier phase
    key = checkpoint_key(tag, weights_md5(ctx.root / POLICY), p["max_length"])
    checkpoints = []
    for name, records in phases:
        if name not in PHASES:
            raise ValueError(f"unknown RoVRM phase {name!r}; phases are {PHASES}")
        if not records:
            raise ValueError(f"phase {name!r} of {tag} has no training pairs")
        cfg = phase_config(ctx, name, len(records))
        key = checkpoint_key(key, name, cfg.to_dict(), records_md5(records))
        ckpt = ctx.checkpoint_dir(key)
        checkpoints.append(ckpt)
        result = train(rm, rm.examples(records, images), pairwise_loss, cfg, checkpoint_dir=str(ckpt),
                       collate_fn=partial(collate_pairs, pad_id=rm.pad_id))
        history += [{**row, "step": row["step"] + offset, "phase_index": PHASES.index(name)} for row in result.history]
        offset += result.steps
        ctx.write_machine_facts({f"{tag}/{name}/seconds": round(result.elapsed_s, 2)})
        summary.update({f"{name}/pairs": len(records), f"{name}/steps": result.steps,
                        f"{name}/stopped_by_time_budget": result.stopped_by_time_budget})
    summary["train_steps"] = offset
    summary["stopped_by_time_budget"] = any(summary[f"{n}/stopped_by_time_budget"] for n, _ in phases)
    rm.eval()
    return rm, history, summary, checkpoints


def remove_checkpoints(folders: Sequence[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def evaluate_visual_rm(ctx: StageContext, rm: VisualRewardModel, images: ImageStore, out: Path,
                       prefix: str = "") -> dict:
    """Shared-harness metrics on the held-out visual pairs; per-pair credits to plots/pairs*.csv for paired tests."""
    ev = ctx.block("visual")["rm"]["eval"]
    records = world_records(ctx, "visual_test.jsonl")[: int(ev["n_pairs"])]
    metrics, details = evaluate_pairs(rm.scorer(images), records, TEST_SPLIT, seed=ctx.seed,
                                      n_bootstrap=int(ev["bootstrap"]), batch_size=int(ev["batch_size"]))
    tag = f"_{prefix.strip('/')}" if prefix else ""
    n = len(details.ids)
    gold_c = details.gold_chosen if details.gold_chosen is not None else [None] * n
    gold_r = details.gold_rejected if details.gold_rejected is not None else [None] * n
    rows = [{"id": i, "p": float(p), "gold_chosen": gc, "gold_rejected": gr}
            for i, p, gc, gr in zip(details.ids, details.p, gold_c, gold_r)]
    write_csv(rows, out / "plots" / f"pairs{tag}.csv", ["id", "p", "gold_chosen", "gold_rejected"])
    if not prefix:
        plot_reliability(details.label_bins, out / "plots" / "reliability.png", "Visual RM reliability (test)")
    return {f"{prefix}{k}": (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}


def accuracy_key(metrics: dict, prefix: str = "") -> str:
    """Gold-order accuracy where the test pairs have gold, else label accuracy (real test pairs)."""
    gold = f"{prefix}{TEST_SPLIT}/acc_gold"
    return gold if gold in metrics else f"{prefix}{TEST_SPLIT}/acc_label"


def accuracy_gate(ctx: StageContext, metrics: dict, prefix: str = "") -> dict:
    """The accuracy's 95% CI above chance, and training not cut short by its time budget."""
    key = accuracy_key(metrics, prefix)
    split, kind = key.rsplit("/", 1)
    provenance = Provenance(ctx.profile, file_eval_set(ctx.root, f"{WORLD}/visual_test.jsonl", metrics[f"{split}/n"]),
                            bool(metrics.get(f"{prefix}stopped_by_time_budget")))
    return interval_gate(key, metrics[key], metrics[f"{key}_ci95_low"], 0.5, provenance,
                         f"held-out visual {kind} vs chance")


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


def variant_phases(ctx: StageContext, variant: str) -> list[tuple[str, list[dict]]]:
    """(phase, training pairs) for a variant, from the selection stage's ids (text, caption) and visual set."""
    if variant not in VARIANTS:
        raise ParamsError(f"unknown visual reward-model variant {variant!r}; known: {sorted(VARIANTS)}")
    method, phases = VARIANTS[variant]
    visual = read_jsonl(ctx.root / SELECT / "visual_train.jsonl")
    selections = json.loads((ctx.root / SELECT / "selections.json").read_text(encoding="utf-8")) if method else {}
    pools = {"caption": "caption_pool.jsonl", "text": "text_pool.jsonl"}
    out = []
    for phase in phases:
        if phase == "visual":
            out.append((phase, visual))
            continue
        keep = set(selections[method][phase])
        out.append((phase, [r for r in world_records(ctx, pools[phase]) if r["id"] in keep]))
    return out


def policy_images(ctx: StageContext) -> ImageStore:
    """Images of the world at the policy's input resolution (read from its config, no model load)."""
    cfg = json.loads((ctx.root / POLICY / "config.json").read_text(encoding="utf-8"))
    return ImageStore(ctx.root / WORLD, int(cfg["vision_config"]["image_size"]))


def oracle_scores(records: list[dict], responses: list[str]) -> dict[str, np.ndarray]:
    """Per-response hallucination rate, recall and gold from each record's scene graph."""
    graded = [grade(Scene.from_dict(r["spec"]["scene"]), r["spec"]["prompt"], y) for r, y in zip(records, responses)]
    return {k: np.array([g[k] for g in graded], dtype=np.float64) for k in ("hallucination_rate", "recall", "gold")}
