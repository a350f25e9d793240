"""Stage `rovrm_compare`: RoVRM against the visual-only RM, in accuracy and in best-of-n use.

Best-of-n: the visual policy samples `max(ns)` responses per held-out prompt (fresh scenes); each
reward model picks its best among the first n; the gold oracle scores the pick's hallucination rate
and recall (a random pick and the oracle's own pick bound the choosers). Accuracy: every trained
visual RM (RoVRM, visual-only) against RoVRM on the same held-out pairs, as a paired
bootstrap difference (the ablations are compared with RoVRM in `rovrm_ablations`, an ablation stage).
The `claims/` metrics say which of the paper's claims held in this run.
Components: `pipelines/visual/best_of_n.py`, `pipelines/visual/compare.py`.
"""
from __future__ import annotations

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import write_csv
from pipelines.models.reward import registry
from pipelines.models.vlm.llava import load_vlm
from pipelines.visual.best_of_n import BON_COLUMNS, best_of_n_table, reward_picks, sample_pool
from pipelines.visual.compare import ACCURACY_COLUMNS, accuracy_table, claims
from pipelines.visual.images import ImageStore
from pipelines.visual.plots import plot_hallucination_by_n
from pipelines.visual.rm_eval import pair_credit, pairs_csv


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    block = ctx.block("visual")
    b = block["best_of_n"]
    n_boot = int(b["bootstrap"])
    models = {"rovrm": ctx.input("rovrm"), "visual_only": ctx.input("visual_only")}
    sources = {name: pairs_csv(folder / "plots") for name, folder in models.items()}
    acc_rows, metrics = accuracy_table({name: pair_credit(path) for name, path in sources.items()}, n_boot, ctx.seed)

    world, policy = ctx.input("world"), ctx.input("policy")
    prompts = read_jsonl(world / "bon_prompts.jsonl")[: int(b["n_prompts"])]
    ns = sorted({int(n) for n in b["ns"]})
    vlm, tokenizer = load_vlm(str(policy))
    samples = sample_pool(vlm, tokenizer, prompts, ImageStore.for_model(world, policy), ns[-1],
                          int(block["rm"]["max_length"]), int(b["max_new_tokens"]), float(b["temperature"]), ctx.seed)
    scorers = {name: registry.load("visual_rm", folder / "model", images=ImageStore.for_model(world, folder / "model"))
               for name, folder in models.items()}
    picks = {name: reward_picks(scorer, prompts, samples, ns) for name, scorer in scorers.items()}
    bon_rows, bon_metrics = best_of_n_table(prompts, samples, ns, picks, n_boot, ctx.seed)
    metrics.update(bon_metrics)
    metrics.update(claims(metrics, ns[-1]))
    out = ctx.output("out")
    write_csv(acc_rows, out / "plots" / "accuracy.csv", ACCURACY_COLUMNS)
    write_csv(bon_rows, out / "plots" / "best_of_n.csv", BON_COLUMNS)
    plot_hallucination_by_n(bon_rows, out / "plots" / "best_of_n.png", "Best-of-n on held-out visual prompts")
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("rovrm_compare", run, blocks=("visual",),
               inputs=("world", "policy", "rovrm", "visual_only"), outputs=("out",))
