"""Stages `rovrm` and `rovrm_visual_only`: a visual reward model trained in phases from the visual policy.

`--variant rovrm`: RoVRM, three phases on OT-selected text pairs, OT-selected caption pairs, then
the visual pairs; published as `reward-visual`. `--variant visual_only`: the same model trained on
the visual pairs alone, the baseline, published as `reward-visual-baseline`. Both are scored by the
shared pair harness on held-out visual pairs; gate: gold-order accuracy's 95% CI above chance.
"""
from __future__ import annotations

import argparse
import sys

from alignflow.runtime.stage import StageContext, stage_main
from stages.common import finish_trained_model
from stages.visual_common import (
    VARIANTS, accuracy_gate, evaluate_visual_rm, policy_images, remove_checkpoints, train_visual_rm, variant_phases,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="stage name; output goes to models/NAME")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    return parser.parse_args(argv)


def make_run(args: argparse.Namespace):
    def run(ctx: StageContext) -> None:
        ctx.use_seed("visual_seed")
        images = policy_images(ctx)
        rm, history, summary, checkpoints = train_visual_rm(ctx, variant_phases(ctx, args.variant), images, args.name)
        out = ctx.output(f"models/{args.name}")
        metrics = evaluate_visual_rm(ctx, rm, images, out)
        metrics.update({"variant": args.variant, **summary})
        metrics["gate"] = accuracy_gate(ctx, metrics)
        rm.save(out / "model")
        finish_trained_model(ctx, out, f"models/{args.name}", history, f"Visual RM ({args.variant})", "train_acc",
                             metrics)
        remove_checkpoints(checkpoints)

    return run


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    stage_main(arguments.name, make_run(arguments), blocks=("visual",))
