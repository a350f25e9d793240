"""LRHP embedding and selection throughput against the BT reward model's plain scoring pass.

Not a test: it prints numbers measured in one run on this machine (medians of `--repeats`). Both
models sit on the same backbone checkpoint and see the same pairs: LRHP reads one sequence per pair
("prompt, A, B, <pair>"), BT two (prompt + chosen, prompt + rejected). Selection is the kNN rule of
`lrhp_select` (cosine to the `--n-target` target vectors, top K). Pairs are the file's records
cycled up to `--n-pairs`. Peak memory is this process's maximum resident set size.

    python -m benchmarks.lrhp_embed --model models/base_lm/model --pairs data/prefs/train.jsonl --n-pairs 100000
    python -m benchmarks.lrhp_embed --n-pairs 256 --repeats 1        # a quick check
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmarks.machine import cpu_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/base_lm/model", help="local HF causal-LM checkpoint (backbone)")
    parser.add_argument("--pairs", default="data/prefs/train.jsonl", help="prompt/chosen/rejected JSONL")
    parser.add_argument("--n-pairs", type=int, default=100_000)
    parser.add_argument("--n-target", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def _median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from pipelines.data.jsonl import read_jsonl
    from pipelines.lrhp.selection import similarity_scores, top_k
    from pipelines.models.causal_lm import load_causal_lm
    from pipelines.models.preference import PairEncoder
    from pipelines.models.reward.bt import BTRewardModel
    from pipelines.models.tokenizer import load_tokenizer

    records = read_jsonl(args.pairs)
    pairs = [records[i % len(records)] for i in range(args.n_pairs)]
    prompts, chosen, rejected = ([r[k] for r in pairs] for k in ("prompt", "chosen", "rejected"))
    enc = PairEncoder(load_causal_lm(args.model), load_tokenizer(args.model), args.dim, args.max_length).eval()
    bt = BTRewardModel(load_causal_lm(args.model), load_tokenizer(args.model), args.max_length).eval()
    enc.embed(prompts[:8], chosen[:8], rejected[:8], args.batch_size)  # warm-up
    bt.rewards(prompts[:8], chosen[:8], args.batch_size)
    t_embed, z = _median_seconds(lambda: enc.embed(prompts, chosen, rejected, args.batch_size), args.repeats)
    t_bt, _ = _median_seconds(lambda: bt.rewards(prompts * 2, chosen + rejected, args.batch_size), args.repeats)
    target = z[: args.n_target]
    k = min(args.k, len(pairs))
    t_select, picked = _median_seconds(lambda: top_k(similarity_scores(z, target, 5), k), args.repeats)
    assert len(set(picked)) == k
    result = {"cpu": cpu_model(), "threads": args.threads, "n_pairs": args.n_pairs, "repeats": args.repeats,
              "lrhp_embed_pairs_per_s": round(args.n_pairs / t_embed, 1),
              "bt_score_pairs_per_s": round(args.n_pairs / t_bt, 1),
              "lrhp_over_bt": round(t_bt / t_embed, 3),
              "select_seconds": round(t_select, 4), "select_k": k,
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
