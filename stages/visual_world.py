"""Stage `visual_world`: the simulated visual world of the RoVRM branch (`--out`).

Rendered scenes (shape, colour, size, grid position) with their scene graphs; visual preference
pairs from a noisy generator that hallucinates in named ways (absent object, wrong colour, wrong
count, wrong relation, omission), labelled by a noisy labeler; caption-based pairs (the image
replaced by its caption); a text pool mixing scene-related pairs of varied relevance with the
text world's own preference pairs (`--prefs`); captioning / answer demonstrations
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
from pipelines.data.jsonl import read_jsonl
from pipelines.visual.build import build_visual_world
from pipelines.visual.io import REAL_FILES, HeldOutOverlap, write_real_pairs


def _resolve(ctx: StageContext, value: str) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else ctx.root / path


def _use_real_pairs(ctx: StageContext, real: dict, out: Path) -> dict:
    """Swap in real visual pairs where `visual.real` names them (see pipelines/visual/io.py).

    The files' md5s go into the metrics (DVC tracks the param; `external_inputs` fingerprints the files).
    """
    sources = {key: _resolve(ctx, real[key]) for key in REAL_FILES if real.get(key)}
    for key, source in sources.items():
        if not source.is_file():
            raise ParamsError(f"params.yaml: visual.real.{key}: file not found: {source}")
    root = _resolve(ctx, real["image_root"]) if real.get("image_root") else None
    try:
        counts = write_real_pairs(sources, root, out)
    except HeldOutOverlap as exc:
        raise ParamsError(f"params.yaml: visual.real: {exc}") from exc
    return {key: {"path": str(sources[key]), "pairs": n, "md5": file_md5(sources[key])} for key, n in counts.items()}


def run(ctx: StageContext) -> None:
    block = ctx.block("visual")
    cfg = dict(block["world"])
    text_world = read_jsonl(ctx.input("prefs"))
    out = ctx.output("out")
    try:
        summary = build_visual_world(cfg, text_world, out, seed=ctx.seed)
    except ValueError as exc:
        if "cfg" in str(exc):
            raise ParamsError(f"params.yaml: visual.world: {exc}") from exc
        raise
    summary["real_pairs"] = _use_real_pairs(ctx, block.get("real") or {}, out)
    ctx.write_metrics(out, summary)


if __name__ == "__main__":
    stage_main("visual_world", run, blocks=("visual",), inputs=("prefs",), outputs=("out",))
