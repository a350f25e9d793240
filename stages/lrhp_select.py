"""Stage `lrhp_select`: preference data selection with LRHP pair vectors against baselines at equal K.

For each target (a kind of preference named by its prompt families, `lrhp_select.targets`), the
first `n_target` held-out pairs of that kind are the small target set, the next `n_test` its test pairs.
Every selection trains the project's BT reward model (same trainer, same steps) on K pool pairs and
is scored by gold-order accuracy on the target's test pairs. Methods: `lrhp` (kNN similarity of pair
vectors to the target set), `lrhp_ot` (the OT selector of `pipelines/selection/` on the same
vectors), `prompt_emb` (the kNN rule on the base LM's
mean-pooled prompt states), `rm_gap` (largest score gap of the trained BT reward model), `random`, and `all` (the whole
pool, same number of steps). `target_share` says how many selected pairs belong to the target families.
"""
from __future__ import annotations

import numpy as np

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci
from pipelines.evaluation.plots import write_csv
from pipelines.lrhp.plots import plot_selection_curves
from pipelines.lrhp.reward_training import gold_order_credit, score_gaps, train_bt
from pipelines.lrhp.selection import prompt_embeddings, random_k, similarity_scores, top_k
from pipelines.lrhp.vectors import load_vectors, vector_count
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.preference import read_pairs
from pipelines.models.reward.bt import BTRewardModel
from pipelines.models.tokenizer import load_tokenizer
from pipelines.selection import select_ot
from stages.common import train_config

SHARED = ("random", "rm_gap", "all")  # selections that do not look at the target
KNOWN = ("lrhp", "lrhp_ot", "prompt_emb", *SHARED)


def _targets(p: dict, test: list[dict]) -> dict[str, tuple[set, list[int], list[int]]]:
    """name -> (families, reference indices, test indices) into the embedded held-out pairs."""
    out, n_ref = {}, int(p["n_target"])
    for i, t in enumerate(p["targets"]):
        if not isinstance(t, dict) or not t.get("name") or not t.get("families"):
            raise ParamsError(f"params.yaml: lrhp_select.targets[{i}]: needs 'name' and a list of 'families'")
        fams = set(t["families"])
        idx = [j for j, r in enumerate(test) if r.get("family") in fams]
        if len(idx) < n_ref + 10:
            raise ParamsError(f"params.yaml: lrhp_select.targets[{i}] ({t['name']}): {len(idx)} embedded held-out "
                              f"pairs of families {sorted(fams)}, need n_target + 10 = {n_ref + 10} "
                              f"(raise lrhp.eval.n_pairs or lower lrhp_select.n_target)")
        out[str(t["name"])] = (fams, idx[:n_ref], idx[n_ref:n_ref + int(p["n_test"])])
    return out


def _selections(ctx, p, pool, z_pool, test, z_test, targets) -> dict[tuple, list[int]]:
    methods, ks, knn = list(p["methods"]), [int(k) for k in p["ks"]], int(p["knn"])
    unknown = sorted(set(methods) - set(KNOWN))
    if unknown:
        raise ParamsError(f"params.yaml: lrhp_select.methods: unknown {unknown}; known: {list(KNOWN)}")
    if any(not 1 <= k <= len(pool) for k in ks):
        raise ParamsError(f"params.yaml: lrhp_select.ks: every K must lie in 1..{len(pool)} (pool size), got {ks}")
    sel: dict[tuple, list[int]] = {}
    if "all" in methods:
        sel[("all", None, len(pool))] = list(range(len(pool)))
    if "rm_gap" in methods:
        gaps = score_gaps(BTRewardModel.load(str(ctx.input("bt"))), pool, int(p["batch_size"]))
    if "prompt_emb" in methods:
        base = str(ctx.input("base"))
        lm, tok = load_causal_lm(base), load_tokenizer(base)
        e_pool = prompt_embeddings(lm, tok, [r["prompt"] for r in pool], int(p["batch_size"]))
        e_test = prompt_embeddings(lm, tok, [r["prompt"] for r in test], int(p["batch_size"]))
    for k in ks:
        if "random" in methods:
            sel[("random", None, k)] = random_k(len(pool), k, ctx.seed)
        if "rm_gap" in methods:
            sel[("rm_gap", None, k)] = top_k(gaps, k)
        for name, (_, ref, _) in targets.items():
            if "lrhp" in methods:
                sel[("lrhp", name, k)] = top_k(similarity_scores(z_pool, z_test[ref], knn), k)
            if "lrhp_ot" in methods:
                sel[("lrhp_ot", name, k)] = [int(i) for i in select_ot(z_pool.numpy(), z_test[ref].numpy(), k).indices]
            if "prompt_emb" in methods:
                sel[("prompt_emb", name, k)] = top_k(similarity_scores(e_pool, e_test[ref], knn), k)
    return sel


def run(ctx: StageContext) -> None:
    ctx.use_seed("lrhp_seed")
    p = ctx.block("lrhp_select")
    cfg = train_config(ctx, p, "lrhp_select")
    kind_column = str(ctx.block("lrhp")["kind_column"])
    folder = ctx.input("lrhp")
    pool = read_pairs(ctx.input("pool"), kind_column)
    test = read_pairs(ctx.input("test"), kind_column, need_gold=True)[: vector_count(folder, "test")]
    z_pool, z_test = load_vectors(folder, "pool", pool), load_vectors(folder, "test", test)
    targets = _targets(p, test)
    selections = _selections(ctx, p, pool, z_pool, test, z_test, targets)
    boot, metrics, rows, credits = int(p["bootstrap"]), {}, [], {}
    for (method, target, k), idx in selections.items():
        rm, _ = train_bt(str(ctx.input("base")), [pool[i] for i in idx], cfg, int(p["max_length"]), ctx.seed)
        for name, (fams, _, held) in targets.items():
            if target not in (None, name):
                continue
            held_recs = [test[j] for j in held]
            credit = gold_order_credit(score_gaps(rm, held_recs, int(p["batch_size"])), held_recs)
            credits[(name, method, k)] = credit
            acc, lo, hi = bootstrap_mean_ci(credit, boot, ctx.seed)
            share = float(np.mean([pool[i].get("family") in fams for i in idx]))
            key = f"{name}/{method}" if method == "all" else f"{name}/{method}/k{k}"
            metrics.update({f"{key}/acc_gold": round(acc, 5), f"{key}/acc_gold_ci95_low": round(lo, 5),
                            f"{key}/acc_gold_ci95_high": round(hi, 5), f"{key}/target_share": round(share, 5)})
            rows.append({"target": name, "method": method, "k": k, "acc_gold": round(acc, 5),
                         "target_share": round(share, 5)})
    for (name, method, k), credit in credits.items():
        if method != "lrhp":
            continue
        for other in ("random", "rm_gap", "prompt_emb", "lrhp_ot"):
            if (name, other, k) in credits:
                d, lo, hi = paired_difference_ci(credit, credits[(name, other, k)], boot, ctx.seed)
                metrics.update({f"{name}/lrhp_minus_{other}/k{k}": round(d, 5),
                                f"{name}/lrhp_minus_{other}/k{k}_ci95_low": round(lo, 5),
                                f"{name}/lrhp_minus_{other}/k{k}_ci95_high": round(hi, 5)})
    for name, (_, ref, held) in targets.items():
        metrics.update({f"{name}/n_target": len(ref), f"{name}/n_test": len(held)})
    out = ctx.output("out")
    write_csv(rows, out / "plots" / "selection_curves.csv", ["target", "method", "k", "acc_gold", "target_share"])
    plot_selection_curves(rows, out / "plots" / "selection_curves.png",
                          "BT reward model trained on K selected pool pairs (equal steps)")
    metrics.update({"pool_pairs": len(pool), "train_steps_per_model": cfg.max_steps, "n_models": len(selections)})
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success(ctx.output_path("out") / "plots", "plots")


if __name__ == "__main__":
    stage_main("lrhp_select", run, inputs=("base", "bt", "lrhp", "pool", "test"), outputs=("out",))
