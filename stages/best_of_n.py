"""Stage `best_of_n`: the SFT policy plus a reward model at decode time, as a policy.

For each n, the response a reward model picks among the first n samples of the `sft_samples` pool
(GRAM by knockout, BT by argmax), summarised like every other policy: gold reward and its paired gain
over SFT, win rate, both proxies, and the analytic KL(best-of-n || SFT) = log n - (n - 1)/n.
"""
from __future__ import annotations

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.evaluation.plots import write_csv
from pipelines.evaluation.policy_eval import summarize_policy
from pipelines.evaluation.reward_metrics import best_of_n_kl
from pipelines.models.bt_reward import BTRewardModel
from pipelines.models.reward import GenerativeRewardModel
from pipelines.training.rng import set_seed
from stages.policy_common import REWARD_MODELS, greedy_references, load_sft
from pipelines.rlhf.rewards import bt_score_fn, gram_score_fn


def run(ctx: StageContext) -> None:
    ctx.use_seed("rlhf_seed")
    p = ctx.block("best_of_n")
    ev = ctx.block("rlhf")["eval"]
    set_seed(ctx.seed)
    pool = read_jsonl(ctx.root / "data/sft_samples/samples.jsonl")
    ns = sorted({int(n) for n in p["n"]})
    k = min(len(r["samples"]) for r in pool)
    if not ns or ns[0] < 1 or ns[-1] > k:
        raise ParamsError(f"params.yaml: best_of_n.n must lie in [1, {k}] (sft_samples.k), got {p['n']}")
    batch = int(p["batch_size"])
    gram = GenerativeRewardModel.load(str(ctx.root / REWARD_MODELS["gram"]))
    bt = BTRewardModel.load(str(ctx.root / REWARD_MODELS["bt"]))
    sft_lm, tokenizer = load_sft(ctx)
    proxies = {"gram": gram_score_fn(gram, greedy_references(sft_lm, tokenizer, ev), batch),
               "bt": bt_score_fn(bt, batch)}
    choosers = {"gram": lambda ps, cs: gram.best_of_n_knockout_many(ps, cs, batch_size=batch),
                "bt": lambda ps, cs: bt.best_of_n_argmax_many(ps, cs, batch_size=batch)}
    prompts = [r["prompt"] for r in pool]
    sft_gold = [list(r["gold"]) for r in pool]
    out = ctx.output("models/best_of_n")
    metrics: dict = {"n_prompts": len(pool), "pool_k": k}
    curve: dict[int, dict] = {n: {"n": n, "kl": round(best_of_n_kl(n), 4)} for n in ns}
    picks_out = []
    for rm, choose in choosers.items():
        for n in ns:
            picks = [0] * len(pool) if n == 1 else choose(prompts, [r["samples"][:n] for r in pool])
            rows = [{"prompt_index": i, "family": r["family"], "response": r["samples"][j], "gold": r["gold"][j]}
                    for i, (r, j) in enumerate(zip(pool, picks))]
            scores = {name: fn(prompts, [row["response"] for row in rows]).tolist() for name, fn in proxies.items()}
            m = summarize_policy(rows, sft_gold, n_bootstrap=int(ev["bootstrap"]), seed=ctx.seed,
                                 kl=best_of_n_kl(n), proxies=scores)
            m["proxy"] = m[f"proxy/{rm}"]
            metrics.update({f"{rm}/n{n}/{k}": v for k, v in m.items()})
            curve[n].update({"sqrt_kl": m["sqrt_kl"], f"{rm}_gold": m["gold"], f"{rm}_proxy": m["proxy"],
                             f"{rm}_gold_ci95_low": m["gold_ci95_low"], f"{rm}_gold_ci95_high": m["gold_ci95_high"]})
            picks_out += [{"reward_model": rm, "n": n, "id": pool[i]["id"], "pick": int(j)} for i, j in enumerate(picks)]
    write_jsonl_atomic(picks_out, out / "picks.jsonl")
    write_csv(list(curve.values()), out / "plots" / "best_of_n.csv",
              ["n", "kl", "sqrt_kl"] + [f"{rm}_{k}" for rm in choosers
                                        for k in ("gold", "gold_ci95_low", "gold_ci95_high", "proxy")])
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("best_of_n", run, blocks=("rlhf_seed", "best_of_n", "rlhf"))
