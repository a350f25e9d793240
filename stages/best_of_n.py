"""Stage `best_of_n`: the SFT policy plus a reward model at decode time, as a policy.

For each n, the response each reward model the profile names (`best_of_n.reward_models`; GRAM picks
by knockout, BT by argmax) picks among the first n samples of the `sft_samples` pool, summarised like
every other policy: gold reward and its paired gain over SFT, win rate, the proxies, and the analytic
KL(best-of-n || SFT) = log n - (n - 1)/n. The picks (picks.jsonl) are what `rm_compare` reads.
"""
from __future__ import annotations

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.evaluation.plots import write_csv
from pipelines.rlhf.best_of_n import best_of_n_policy, pool_size_check
from pipelines.rlhf.heldout import greedy_references
from pipelines.training.rng import set_seed
from stages.policy_common import POLICY_INPUTS, load_sft, policy_options, read_pool, reward_scorers


def run(ctx: StageContext) -> None:
    ctx.use_seed("rlhf_seed")
    p = ctx.block("best_of_n")
    rl = ctx.block("rlhf")
    ev = rl["eval"]
    set_seed(ctx.seed)
    pool = read_pool(ctx)
    try:
        pool_size_check(pool, p["n"])
    except ValueError as exc:
        raise ValueError(f"params.yaml: {exc}") from None
    choosers = list(p["reward_models"])
    names = list(dict.fromkeys([*choosers, *rl["reward_models"]]))
    sft_lm, tokenizer = load_sft(ctx)
    scorers = reward_scorers(ctx, names, batch_size=int(p["batch_size"]),
                             references=greedy_references(sft_lm, tokenizer, ev))
    proxies = {name: scorers[name] for name in dict.fromkeys([*rl["reward_models"], *choosers])}
    result = best_of_n_policy(pool, p["n"], {name: scorers[name] for name in choosers}, proxies,
                              n_bootstrap=int(ev["bootstrap"]), seed=ctx.seed)
    out = ctx.output("out")
    write_jsonl_atomic(result.picks, out / "picks.jsonl")
    write_csv(result.curve, out / "plots" / "best_of_n.csv", result.columns)
    ctx.write_metrics(out, result.metrics)


if __name__ == "__main__":
    stage_main("best_of_n", run, blocks=("rlhf_seed", "best_of_n", "rlhf"), inputs=POLICY_INPUTS, outputs=("out",),
               configure=policy_options)
