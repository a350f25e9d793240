"""What the policy stages (PPO, DPO, best-of-n) share: held-out prompts, proxy rewards, evaluation, gate.

Every policy is judged on the prompts of the `sft_samples` pool, against that pool's SFT samples,
with the same sampling settings (`rlhf.eval`), so the numbers of different stages compare directly.
"""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.evaluation.policy_eval import sample_policy, summarize_policy
from pipelines.evaluation.sampling import generate_responses
from pipelines.models.bt_reward import BTRewardModel
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward import GenerativeRewardModel
from pipelines.models.tokenizer import load_tokenizer
from pipelines.rlhf.rewards import ReferenceResponses, bt_score_fn, gram_score_fn

SFT_DIR = "models/sft/model"
REWARD_MODELS = {"gram": "models/gram/model", "bt": "models/bt_rm/model"}


def load_sft(ctx: StageContext):
    """The SFT policy and its tokenizer (the starting point and the KL reference of every policy)."""
    path = ctx.root / SFT_DIR
    return load_causal_lm(str(path)), load_tokenizer(str(path))


def heldout_prompts(ctx: StageContext) -> tuple[list[dict], list[list[float]]]:
    """The `sft_samples` prompts and the gold rewards of the SFT samples for each."""
    pool = read_jsonl(ctx.root / "data/sft_samples/samples.jsonl")
    prompts = [{"id": r["id"], "family": r["family"], "prompt": r["prompt"], "spec": r["spec"]} for r in pool]
    return prompts, [list(r["gold"]) for r in pool]


def train_prompts(ctx: StageContext, n: int) -> list[str]:
    """Distinct prompts of the SFT training split (never the held-out evaluation prompts)."""
    if n < 1:
        raise ParamsError(f"params.yaml: rlhf.n_train_prompts must be >= 1, got {n}")
    prompts = list(dict.fromkeys(r["prompt"] for r in read_jsonl(ctx.root / "data/world/sft_train.jsonl")))
    return prompts[:n]


def greedy_references(sft_lm, tokenizer, ev: dict) -> ReferenceResponses:
    """GRAM's reference for a prompt: the SFT policy's greedy response, made on first use."""
    return ReferenceResponses(lambda ps: generate_responses(
        sft_lm, tokenizer, ps, max_new_tokens=int(ev["max_new_tokens"]), temperature=0.0,
        batch_size=int(ev["batch_size"]), progress=False))


def proxy_scorers(ctx: StageContext, references: ReferenceResponses, batch_size: int) -> dict:
    """name -> score function for both reward models (the proxies every policy is reported under)."""
    gram = GenerativeRewardModel.load(str(ctx.root / REWARD_MODELS["gram"]))
    bt = BTRewardModel.load(str(ctx.root / REWARD_MODELS["bt"]))
    return {"gram": gram_score_fn(gram, references, batch_size), "bt": bt_score_fn(bt, batch_size)}


def evaluate_policy(ctx: StageContext, policy, ref_lm, tokenizer, proxies: dict, out: Path) -> dict:
    """Sample on the held-out prompts, score with gold and both proxies, compare with SFT; writes samples.jsonl."""
    ev = ctx.block("rlhf")["eval"]
    prompts, sft_gold = heldout_prompts(ctx)
    rows = sample_policy(policy, ref_lm, tokenizer, prompts, int(ev["n_samples"]), int(ev["max_new_tokens"]),
                         float(ev["temperature"]), seed=ctx.seed, batch_size=int(ev["batch_size"]))
    scores = {name: fn([r["prompt"] for r in rows], [r["response"] for r in rows]).tolist()
              for name, fn in proxies.items()}
    for name, values in scores.items():
        for r, v in zip(rows, values):
            r[f"proxy_{name}"] = round(float(v), 5)
    write_jsonl_atomic(rows, out / "samples.jsonl")
    return summarize_policy(rows, sft_gold, n_bootstrap=int(ev["bootstrap"]), seed=ctx.seed, proxies=scores)


def gold_gate(ctx: StageContext, metrics: dict) -> dict:
    """Champion only if the gold reward beats the SFT policy's with the 95% interval clear of zero.

    Measured on the `sft_samples` pool (its prompts and the SFT gold the gain is paired with).
    """
    measured_on = file_eval_set(ctx.root, "data/sft_samples/samples.jsonl", metrics["n_prompts"])
    provenance = Provenance(ctx.profile, measured_on, metrics["stopped_by_time_budget"])
    return interval_gate("gold_gain_vs_sft", metrics["gold_gain_vs_sft"], metrics["gold_gain_vs_sft_ci95_low"], 0.0,
                         provenance, f"paired gold gain over SFT {metrics['gold_gain_vs_sft']:+.4f}")
