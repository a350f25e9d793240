"""Stage `lrhp`: train the LRHP pair encoder on the labelled preference pairs and map what it learned.

Inputs: the backbone (`--base`, the project's base LM; `lrhp.backbone` names any local HF causal LM
instead), the training pairs (`--pairs`) and held-out pairs (`--test`). Writes the encoder
(`model/`), the vectors of every training and held-out pair (`vectors.safetensors`, read by
`lrhp_select` and `lrhp_margin`), the 2-D map coloured by prompt family and the metrics. Published as
`preference-repr`; gate: order-aware preference accuracy against gold on held-out pairs, 95% interval
above chance.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.evaluation.bootstrap import bootstrap_mean_ci
from pipelines.evaluation.plots import write_csv
from pipelines.lrhp.analysis import (gold_credit, knn_kind_accuracy, majority_share, order_credit, pca_2d,
                                     plot_map)
from pipelines.lrhp.vectors import save_vectors
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.preference import (PairEncoder, collate_pairs, kind_index, make_lrhp_loss, pair_examples,
                                         read_pairs)
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config
from stages.reward_common import relative


def _backbone(ctx: StageContext, p: dict) -> Path:
    if not p.get("backbone"):
        return ctx.input("base")
    path = Path(p["backbone"])
    path = path if path.is_absolute() else ctx.root / path
    if not (path / "config.json").is_file():
        raise ParamsError(f"params.yaml: lrhp.backbone: {p['backbone']!r} is not a local HF checkpoint folder")
    return path


def _evaluate(enc: PairEncoder, pool: list[dict], z_pool, test: list[dict], ev: dict, seed: int) -> tuple[dict, object]:
    """Vectors of every held-out pair, and metrics on the first `n_scored`: order-aware preference accuracy
    (label, gold; needs the swapped order too) and kind purity of nearest neighbours."""
    bs = int(ev["batch_size"])
    z_all = enc.embed_records(test, bs)
    n = min(int(ev["n_scored"]), len(test))
    test, z_test = test[:n], z_all[:n]
    z_swap = enc.embed([r["prompt"] for r in test], [r["rejected"] for r in test], [r["chosen"] for r in test], bs)
    fwd, swp = enc.first_preferred_logit(z_test), enc.first_preferred_logit(z_swap)
    credit = order_credit(fwd, swp)
    m: dict = {"test_id/n": len(test)}
    boot = int(ev["bootstrap"])
    acc, lo, hi = bootstrap_mean_ci(credit, boot, seed)
    m.update({"test_id/pref_acc_label": acc, "test_id/pref_acc_label_ci95_low": lo, "test_id/pref_acc_label_ci95_high": hi})
    g, keep = gold_credit(credit, test)
    acc, lo, hi = bootstrap_mean_ci(g, boot, seed)
    m.update({"test_id/pref_acc_gold": acc, "test_id/pref_acc_gold_ci95_low": lo, "test_id/pref_acc_gold_ci95_high": hi,
              "test_id/n_gold": int(keep.sum())})
    m["test_id/order_flip_rate"] = float(np.mean(((fwd > 0) != (swp > 0)).numpy()))
    pool_kinds, test_kinds = [r["kind"] for r in pool], [r["kind"] for r in test]
    m["test_id/kind_knn_acc"] = knn_kind_accuracy(z_pool, pool_kinds, z_test, test_kinds)
    m["test_id/kind_majority_share"] = majority_share(pool_kinds, test_kinds)
    families = [r.get("family", r["kind"]) for r in pool]
    m["test_id/family_knn_acc"] = knn_kind_accuracy(z_pool, families, z_test,
                                                    [r.get("family", r["kind"]) for r in test])
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in m.items()}, z_all


def run(ctx: StageContext) -> None:
    ctx.use_seed("lrhp_seed")
    p = ctx.block("lrhp")
    cfg = train_config(ctx, p, "lrhp")
    obj = p["objectives"]
    set_seed(ctx.seed)
    backbone = _backbone(ctx, p)
    pool = read_pairs(ctx.input("pairs"), str(p["kind_column"]))
    test = read_pairs(ctx.input("test"), str(p["kind_column"]), need_gold=True)[: int(p["eval"]["n_pairs"])]
    enc = PairEncoder(load_causal_lm(str(backbone)), load_tokenizer(str(backbone)), int(p["dim"]),
                      int(p["max_length"]), seed=ctx.seed)
    kind_ids, kinds = kind_index([r["kind"] for r in pool])
    examples = pair_examples(pool, enc, kind_ids, ctx.seed)
    ctx.log_dataset(ctx.input("pairs"), "training", "prefs_train")
    weights = backbone / "model.safetensors"
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(ctx.input("pairs")),
                                             file_md5(weights) if weights.is_file() else str(backbone)))
    loss = make_lrhp_loss(float(obj["preference"]), float(obj["contrastive"]), float(obj["temperature"]))
    result = train(enc, examples, loss, cfg, checkpoint_dir=str(ckpt), on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_pairs, pad_id=enc.pad_id, swap_negatives=bool(obj["swap_negatives"])))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    enc.eval()
    out = ctx.output("out")
    z_pool = enc.embed_records(pool, int(p["eval"]["batch_size"]))
    metrics, z_test = _evaluate(enc, pool, z_pool, test, p["eval"], ctx.seed)
    save_vectors(out, {"pool": z_pool, "test": z_test}, {"pool": [r["id"] for r in pool], "test": [r["id"] for r in test]})
    n_map = min(int(p["eval"]["n_scored"]), len(test))
    xy = pca_2d(z_test[:n_map])
    families = [r.get("family", r["kind"]) for r in test[:n_map]]
    write_csv([{"x": round(float(a), 5), "y": round(float(b), 5), "family": f, "kind": r["kind"]}
               for (a, b), f, r in zip(xy, families, test)], out / "plots" / "map.csv", ["x", "y", "family", "kind"])
    plot_map(xy, families, out / "plots" / "map.png", "LRHP pair vectors of held-out pairs (PCA), by prompt family")
    metrics.update({"train_pairs": len(pool), "n_kinds": len(kinds), "dim": int(p["dim"]), "train_steps": result.steps,
                    "stopped_by_time_budget": result.stopped_by_time_budget,
                    "gate": interval_gate("test_id/pref_acc_gold", metrics["test_id/pref_acc_gold"],
                                          metrics["test_id/pref_acc_gold_ci95_low"], 0.5, Provenance(
                                              ctx.profile, file_eval_set(ctx.root, relative(ctx, ctx.input("test")),
                                                                         metrics["test_id/n"]), result.stopped_by_time_budget),
                                          "held-out order-aware preference accuracy vs gold, against chance")})
    enc.save(str(out / "model"))
    finish_trained_model(ctx, out, ctx.output_path("out"), result.history, "LRHP pair encoder", "acc", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("lrhp", run, inputs=("base", "pairs", "test"), outputs=("out",))
