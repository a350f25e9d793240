"""Stage group `rovrm` (`rovrm@rovrm`, `rovrm@rovrm_visual_only`): a visual reward model trained in phases.

`--variant rovrm`: RoVRM, three phases on OT-selected text pairs, OT-selected caption pairs, then
the visual pairs; published as `reward-visual`. `--variant visual_only`: the same model trained on
the visual pairs alone, the baseline, published as `reward-visual-baseline`. With
`visual.rm.likelihood_anchor` (default) both rewards add the model's own mean response log-probability,
the head starting at zero (`pipelines/models/reward/visual.py`). Both are scored by the
shared pair harness on held-out visual pairs, and again with every image blanked (flat, its mean
colour): `image_minus_blank` (paired 95% CI) says whether the model reads the image at all.
Gate: gold-order accuracy's 95% CI above chance.
The recipe is `pipelines/visual/rm_training.py`.
"""
from __future__ import annotations

import json

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.visual.images import ImageStore
from pipelines.visual.rm_eval import accuracy_key, blanked, evaluate_visual_rm, image_reliance, pairs_csv
from pipelines.visual.rm_training import (
    MAIN_VARIANTS, POOL_FILES, VARIANTS, phases_needed, remove_checkpoints, train_visual_rm, variant_phases,
)
from stages.common import finish_trained_model, train_config


BLANK = "blank/"  # metric prefix of the image-blanked control


def accuracy_gate(ctx: StageContext, metrics: dict, test_file) -> dict:
    """The accuracy's 95% CI above chance, and training not cut short by its time budget."""
    key = accuracy_key(metrics)
    split, kind = key.rsplit("/", 1)
    provenance = Provenance(ctx.profile, file_eval_set(ctx.root, test_file, metrics[f"{split}/n"]),
                            bool(metrics.get("stopped_by_time_budget")))
    return interval_gate(key, metrics[key], metrics[f"{key}_ci95_low"], 0.5, provenance,
                         f"held-out visual {kind} vs chance")


def run(ctx: StageContext) -> None:
    variant = ctx.args.variant
    if variant not in MAIN_VARIANTS:
        raise ParamsError(f"stage {ctx.name}: --variant {variant!r}; this stage trains {MAIN_VARIANTS}")
    ctx.use_seed("visual_seed")
    p = ctx.block("visual")["rm"]
    world, policy = ctx.input("world"), ctx.input("policy")
    images = ImageStore.for_model(world, policy)
    method = VARIANTS[variant][0]
    selections = json.loads(ctx.input("selections").read_text(encoding="utf-8")) if method else None
    pools = {phase: read_jsonl(world / f) for phase, f in POOL_FILES.items()} if method else {}
    phases = variant_phases(variant, read_jsonl(ctx.input("visual_train")), selections, pools)
    configs = {ph: train_config(ctx, p["phases"][ph], f"visual.rm.phases.{ph}") for ph in phases_needed([variant])}
    tag = ctx.name.split("@")[-1]
    trained = train_visual_rm(policy, phases, images, configs, int(p["max_length"]), ctx.seed, tag, ctx.checkpoint_dir,
                              likelihood_anchor=p["likelihood_anchor"])
    ctx.write_machine_facts({f"{tag}/{phase}/seconds": s for phase, s in trained.seconds.items()})
    out = ctx.output("out")
    test_file = ctx.input("visual_test")
    ev = p["eval"]
    test = read_jsonl(test_file)[: int(ev["n_pairs"])]
    settings = (ctx.seed, int(ev["bootstrap"]), int(ev["batch_size"]))
    metrics = evaluate_visual_rm(trained.rm, images, test, out / "plots", *settings)
    # the image-blanked control: what is left of the accuracy when the reward model cannot see
    metrics.update(evaluate_visual_rm(trained.rm, blanked(images), test, out / "plots", *settings, prefix=BLANK))
    metrics.update(image_reliance(pairs_csv(out / "plots"), pairs_csv(out / "plots", BLANK),
                                  int(ev["bootstrap"]), ctx.seed))
    metrics.update({"variant": variant, **trained.summary})
    metrics["gate"] = accuracy_gate(ctx, metrics, test_file)
    trained.rm.save(out / "model")
    finish_trained_model(ctx, out, ctx.output_path("out"), trained.history, f"Visual RM ({variant})", "train_acc",
                         metrics)
    remove_checkpoints(trained.checkpoints)


if __name__ == "__main__":
    stage_main("rovrm", run, blocks=("visual",), inputs=("world", "policy", "visual_train", "visual_test", "selections"),
               outputs=("out",), configure=lambda p: p.add_argument("--variant", required=True, choices=MAIN_VARIANTS))
