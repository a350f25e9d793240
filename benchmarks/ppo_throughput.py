"""PPO throughput with its phase breakdown, and rollout generation against plain HF `generate`.

Not a test: it prints numbers and ratios measured in one run on this machine. PPO runs `--steps`
iterations against the trained reward models (setup and a warm-up iteration excluded); samples/s
and generated tokens/s count the rollout responses, and the breakdown splits the wall time into
generation, reward scoring, the no-grad reference/old-policy pass and the PPO update. Generation is
then timed alone: our rollout sampler (HF `generate` with the KV cache plus bookkeeping) against a
bare `model.generate` call with the KV cache, and without it, on the same prompts and settings.

    python -m benchmarks.ppo_throughput --policy models/sft/model --reward gram
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="models/sft/model", help="local HF causal-LM checkpoint")
    parser.add_argument("--reward", choices=("gram", "bt"), default="gram")
    parser.add_argument("--gram", default="models/gram/model")
    parser.add_argument("--bt", default="models/bt_rm/model")
    parser.add_argument("--prompts", default="data/world/sft_train.jsonl")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="generation timings: median of this many")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="reports/bench/ppo_throughput.json")
    return parser.parse_args()


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ppo_run(args, lm, tok, prompts) -> dict:
    from pipelines.models.reward import registry
    from pipelines.rlhf.heldout import greedy_references
    from pipelines.rlhf.ppo import PPOConfig, PolicyWithValue, optimizer_config, train_ppo

    ref = copy.deepcopy(lm).eval()
    if args.reward == "gram":
        refs = greedy_references(ref, tok, {"max_new_tokens": args.max_new_tokens, "batch_size": 64})
        refs.ensure(prompts[: args.batch_size * (args.steps + 1)])  # references are setup, not PPO work
        score = registry.load("gram", args.gram, references=refs).score
    else:
        score = registry.load("bt", args.bt).score
    policy = PolicyWithValue(lm)

    def run(steps: int):
        cfg = PPOConfig(max_steps=steps, batch_size=args.batch_size, minibatch_size=min(16, args.batch_size),
                        max_new_tokens=args.max_new_tokens, eval_every=0)
        optim = optimizer_config({"lr": 1e-4, "weight_decay": 0.0, "warmup_steps": 0}, cfg, "benchmark optim")
        return train_ppo(policy, ref, tok, prompts, score, cfg, optim, progress=False)

    run(1)  # warm-up iteration
    result = run(args.steps)
    phases = {k: v for k, v in result.phase_seconds.items() if k != "eval"}
    total = sum(phases.values())
    return {"iterations": result.steps, "samples": result.samples, "generated_tokens": result.generated_tokens,
            "seconds": round(total, 3), "samples_per_s": round(result.samples / total, 2),
            "generated_tokens_per_s": round(result.generated_tokens / total, 1),
            "phase_share": {k: round(v / total, 3) for k, v in phases.items()}, "phase_seconds": phases}


def generation_run(args, lm, tok, prompts) -> dict:
    from pipelines.evaluation.sampling import left_pad
    from pipelines.rlhf.rollout import encode_queries, sample_rollout

    batch = prompts[: args.batch_size]
    ids, mask = left_pad(encode_queries(tok, batch), tok.pad_token_id)
    # Same prompts, sampling settings and seed, so all three generate the same tokens and stop alike.
    common = dict(max_new_tokens=args.max_new_tokens, do_sample=True, top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id)

    def ours():
        return sample_rollout(lm, tok, batch, args.max_new_tokens, 1.0, seed=0)

    def hf(use_cache: bool):
        def call():
            torch.manual_seed(0)
            with torch.no_grad():
                lm.generate(input_ids=ids, attention_mask=mask, eos_token_id=tok.eos_token_id, use_cache=use_cache, **common)
        return call

    tokens = int(ours().response_mask.sum())  # response tokens up to each row's eos
    t_ours = _median_seconds(ours, args.repeats)
    t_hf = _median_seconds(hf(True), args.repeats)
    t_nocache = _median_seconds(hf(False), max(1, args.repeats // 2))
    return {"batch": len(batch), "max_new_tokens": args.max_new_tokens,
            "ours_s": round(t_ours, 4), "hf_generate_kv_cache_s": round(t_hf, 4), "hf_generate_no_cache_s": round(t_nocache, 4),
            "ours_tokens_per_s": round(tokens / t_ours, 1), "hf_tokens_per_s": round(tokens / t_hf, 1),
            "ratio_ours_vs_hf": round(t_hf / t_ours, 3), "ratio_kv_cache_vs_no_cache": round(t_nocache / t_hf, 3)}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from pipelines.data.jsonl import read_jsonl
    from pipelines.models.causal_lm import load_causal_lm
    from pipelines.models.tokenizer import load_tokenizer

    lm, tok = load_causal_lm(args.policy), load_tokenizer(args.policy)
    prompts = list(dict.fromkeys(r["prompt"] for r in read_jsonl(args.prompts)))
    gen = generation_run(args, lm, tok, prompts)
    ppo = ppo_run(args, lm, tok, prompts)
    report = {"threads": args.threads, "policy": args.policy, "reward": args.reward, "ppo": ppo, "generation": gen}
    print(f"PPO ({args.reward} reward, batch {args.batch_size}, {args.max_new_tokens} new tokens, {args.threads} threads):")
    print(f"  {ppo['samples_per_s']} samples/s, {ppo['generated_tokens_per_s']} generated tokens/s")
    print("  phase share: " + ", ".join(f"{k} {v:.0%}" for k, v in ppo["phase_share"].items()))
    print(f"Generation, batch {gen['batch']} x {gen['max_new_tokens']} tokens (median of {args.repeats}):")
    print(f"  ours {gen['ours_s']} s | HF generate (KV cache) {gen['hf_generate_kv_cache_s']} s | "
          f"HF generate (no cache) {gen['hf_generate_no_cache_s']} s")
    print(f"  ours vs HF generate: x{gen['ratio_ours_vs_hf']}; KV cache vs none: x{gen['ratio_kv_cache_vs_no_cache']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
