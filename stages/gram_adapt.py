"""Stage `gram_adapt`: adapting a reward model to a new task family with few labels.

For each label budget (0 = no adaptation), fine-tune from the GRAM foundation model, from the base
LM (a GRAM judge with no reward pre-training) and from the BT reward model on the first `budget`
pairs of the adaptation family, with the same step count, and measure accuracy on its test split.
"""
from __future__ import annotations

from functools import partial

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.reward_eval import evaluate_pairs
from pipelines.evaluation.reward_plots import plot_adaptation
from pipelines.models.bt_reward import BTRewardModel, bt_examples, bt_loss, collate_bt
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward import GenerativeRewardModel, collate_judge, gram_stage2_loss, preference_examples
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import train_config

INITS = ("gram", "base_lm", "bt_rm")


def _load(ctx: StageContext, init: str, max_length: int):
    if init == "gram":
        return GenerativeRewardModel.load(str(ctx.root / "models/gram/model"), max_length)
    if init == "bt_rm":
        return BTRewardModel.load(str(ctx.root / "models/bt_rm/model"), max_length)
    base = ctx.root / "models/base_lm/model"
    return GenerativeRewardModel(load_causal_lm(str(base)), load_tokenizer(str(base)), max_length)


def _adapt(rm, records: list[dict], cfg, eps: float, seed: int) -> None:
    if isinstance(rm, BTRewardModel):
        train(rm, bt_examples(records, rm.tokenizer, rm.max_length), bt_loss, cfg,
              collate_fn=partial(collate_bt, pad_id=rm.pad_id), progress=False)
    else:
        train(rm, preference_examples(records, rm.tokenizer, rm.max_length, seed=seed),
              partial(gram_stage2_loss, eps=eps), cfg, collate_fn=partial(collate_judge, pad_id=rm.pad_id),
              progress=False)
    rm.eval()


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("gram_adapt")
    cfg = train_config(ctx, p, "gram_adapt")
    budgets = sorted({int(b) for b in p["budgets"]})
    adapt_train = read_jsonl(ctx.root / "data/world/prefs_adapt_train.jsonl")
    if budgets[-1] > len(adapt_train):
        raise ParamsError(f"params.yaml: gram_adapt.budgets: {budgets[-1]} labels asked, "
                          f"data/world/prefs_adapt_train.jsonl has {len(adapt_train)}")
    test = read_jsonl(ctx.root / "data/world/prefs_adapt_test.jsonl")[: int(p["eval"]["n_pairs"])]
    eps = float(ctx.block("gram")["label_smoothing"])
    metrics: dict = {}
    rows = []
    for budget in budgets:
        row = {"budget": budget}
        for init in INITS:
            set_seed(ctx.seed)
            rm = _load(ctx, init, int(p["max_length"])).eval()
            if budget > 0:
                _adapt(rm, adapt_train[:budget], cfg, eps, ctx.seed)
            m, _ = evaluate_pairs(rm, test, "adapt_test", seed=ctx.seed, n_bootstrap=int(p["eval"]["bootstrap"]),
                                  batch_size=int(p["eval"]["batch_size"]))
            for key in ("acc_gold", "acc_gold_ci95_low", "acc_gold_ci95_high", "acc_label"):
                metrics[f"{init}/b{budget}/{key}"] = round(m[f"adapt_test/{key}"], 4)
            row[init] = round(m["adapt_test/acc_gold"], 4)
            row[f"{init}_low"], row[f"{init}_high"] = (round(m["adapt_test/acc_gold_ci95_low"], 4),
                                                       round(m["adapt_test/acc_gold_ci95_high"], 4))
            ctx.log_metrics({f"{init}/acc_gold": m["adapt_test/acc_gold"]}, step=budget)
        rows.append(row)
    out = ctx.output("models/gram_adapt")
    write_csv(rows, out / "plots" / "adaptation.csv",
              ["budget", *INITS, *(f"{i}_{s}" for i in INITS for s in ("low", "high"))])
    plot_adaptation(rows, INITS, out / "plots" / "adaptation.png")
    metrics["n_test_pairs"] = len(test)
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success("models/gram_adapt/plots", "plots")


if __name__ == "__main__":
    stage_main("gram_adapt", run)
