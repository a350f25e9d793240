"""Stage `visual_world`: the simulated visual world of the RoVRM branch, under data/visual.

Rendered scenes (shape, colour, size, grid position) with their scene graphs; visual preference
pairs from a noisy generator that hallucinates in named ways (absent object, wrong colour, wrong
count, wrong relation, omission), labelled by a noisy labeler; caption-based pairs (the image
replaced by its caption); a text pool mixing scene-related pairs of varied relevance with the
text world's own preference pairs (`data/prefs/train.jsonl`); captioning / answer demonstrations
for the policy; best-of-n prompts on fresh scenes. Gold: the scene graph (pipelines/visual/oracle.py).

Real visual preference data (`visual.real.pool` / `visual.real.test`: LLaVA / RLAIF-V style JSONL,
see pipelines/visual/io.py) replaces the generated visual pool / test pairs; those have no gold,
so the reward models are then scored on their labels. Images stay where they are (absolute paths).
"""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.visual.build import build_visual_world
from pipelines.visual.io import load_visual_pairs
from stages.visual_common import WORLD

REAL_FILES = {"pool": "visual_pool.jsonl", "test": "visual_test.jsonl"}


def _resolve(ctx: StageContext, value: str) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else ctx.root / path


def _use_real_pairs(ctx: StageContext, real: dict, out: Path) -> dict:
    """Swap in real visual pairs where `visual.real` names them; image paths become absolute.

    The files' md5s go into the metrics (DVC tracks the param, not the external file: add the files
    as deps of this stage to rerun on edits). A test pair that is also a training pair is refused.
    """
    used: dict = {}
    loaded: dict[str, list[dict]] = {}
    root = _resolve(ctx, real["image_root"]) if real.get("image_root") else None
    for key, filename in REAL_FILES.items():
        if not real.get(key):
            continue
        source = _resolve(ctx, real[key])
        if not source.is_file():
            raise ParamsError(f"params.yaml: visual.real.{key}: file not found: {source}")
        records = load_visual_pairs(source, image_root=root)
        for rec in records:
            rec["image"] = str(Path(rec["image"]).resolve())
        write_jsonl_atomic(records, out / filename)
        loaded[key] = records
        used[key] = {"path": str(source), "pairs": len(records), "md5": file_md5(source)}
    if len(loaded) == 2:
        seen = {(r["image"], r["prompt"]) for r in loaded["pool"]}
        shared = [r["id"] for r in loaded["test"] if (r["image"], r["prompt"]) in seen]
        if shared:
            raise ParamsError(f"params.yaml: visual.real: {len(shared)} test pairs share image and prompt with the "
                              f"training pool (first: {shared[0]}); held-out pairs must be new")
    return used


def run(ctx: StageContext) -> None:
    block = ctx.block("visual")
    cfg = dict(block["world"])
    text_world = read_jsonl(ctx.root / "data/prefs/train.jsonl")
    out = ctx.output(WORLD)
    try:
        summary = build_visual_world(cfg, text_world, out, seed=ctx.seed)
    except ValueError as exc:
        if "cfg" in str(exc):
            raise ParamsError(f"params.yaml: visual.world: {exc}") from exc
        raise
    summary["real_pairs"] = _use_real_pairs(ctx, block.get("real") or {}, out)
    ctx.write_metrics(out, summary)


if __name__ == "__main__":
    stage_main("visual_world", run, blocks=("visual",))
