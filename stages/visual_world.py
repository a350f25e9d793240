"""Stage `visual_world`: the simulated visual world of the RoVRM branch, under data/visual.

Rendered scenes (shape, colour, size, grid position) with their scene graphs; visual preference
pairs from a noisy generator that hallucinates in named ways (absent object, wrong colour, wrong
count, wrong relation, omission), labelled by a noisy labeler; caption-based pairs (the image
replaced by its caption); a text pool mixing scene-related pairs of varied relevance with the
text world's own preference pairs (`data/prefs/train.jsonl`); captioning / answer demonstrations
for the policy; best-of-n prompts on fresh scenes. Gold: the scene graph (pipelines/visual/oracle.py).
"""
from __future__ import annotations

from alignflow.errors import ParamsError
from alignflow.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.visual.build import build_visual_world
from stages.visual_common import WORLD


def run(ctx: StageContext) -> None:
    cfg = dict(ctx.block("visual")["world"])
    text_world = read_jsonl(ctx.root / "data/prefs/train.jsonl")
    out = ctx.output(WORLD)
    try:
        summary = build_visual_world(cfg, text_world, out, seed=ctx.seed)
    except ValueError as exc:
        if "cfg" in str(exc):
            raise ParamsError(f"params.yaml: visual.world: {exc}") from exc
        raise
    ctx.write_metrics(out, summary)


if __name__ == "__main__":
    stage_main("visual_world", run, blocks=("visual",))
