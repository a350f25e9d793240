"""Stage `sft_samples`: k sampled responses per held-out prompt from the SFT policy.

The shared candidate pool for best-of-n evaluation of every reward model (and later RLHF
baselines), each sample graded once by the gold reward.
"""
from __future__ import annotations

from statistics import fmean

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.data.world import gold_reward
from pipelines.evaluation.sampling import generate_responses
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.rng import set_seed


def run(ctx: StageContext) -> None:
    p = ctx.block("sft_samples")
    k, n_prompts = int(p["k"]), int(p["n_prompts"])
    if k < 1 or n_prompts < 1:
        raise ParamsError("params.yaml: sft_samples.k and sft_samples.n_prompts must be >= 1")
    set_seed(ctx.seed)
    policy_dir = ctx.input("policy")
    model, tokenizer = load_causal_lm(str(policy_dir)), load_tokenizer(str(policy_dir))
    # The SFT stage evaluates on the first prompts; take the pool from the end so they differ.
    prompts = read_jsonl(ctx.input("prompts"))[-n_prompts:]
    flat = [r["prompt"] for r in prompts for _ in range(k)]
    texts = generate_responses(model, tokenizer, flat, max_new_tokens=int(p["max_new_tokens"]),
                               temperature=float(p["temperature"]), seed=ctx.seed, batch_size=int(p["batch_size"]))
    rows = []
    for i, r in enumerate(prompts):
        samples = texts[i * k:(i + 1) * k]
        rows.append({"id": r["id"], "family": r["family"], "prompt": r["prompt"], "spec": r["spec"],
                     "samples": samples, "gold": [gold_reward(r["spec"], s) for s in samples]})
    out = ctx.output("out")
    write_jsonl_atomic(rows, out / "samples.jsonl")
    golds = [g for row in rows for g in row["gold"]]
    ctx.write_metrics(out, {
        "n_prompts": len(rows), "k": k,
        "gold_mean": round(fmean(golds), 4),
        "oracle_best_of_k_gold_mean": round(fmean(max(row["gold"]) for row in rows), 4),
        "distinct_share": round(fmean(len(set(row["samples"])) / k for row in rows), 4),
    })


if __name__ == "__main__":
    stage_main("sft_samples", run, inputs=("policy", "prompts"), outputs=("out",))
