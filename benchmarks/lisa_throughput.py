"""LiSA inference throughput: base model vs the same model with LiSA, prefill and greedy decoding.

Not a test: it prints numbers measured in one run on this machine (CPU, fixed thread count).
The LiSA parameters are left at their initialisation: speed does not depend on their values.

* prefill tokens/s: batch x seq_len / seconds of one forward over the prompt (KV cache built,
  logits for the last position only);
* decode tokens/s: batch x new tokens / seconds of a greedy loop with a DynamicCache after that
  prefill (prefill time excluded).

Each measurement: ``--warmup`` untimed runs, then ``--repeats`` timed runs, base and LiSA
alternating so machine noise hits both alike; the median is reported. The measuring code lives in
`pipelines.compression.throughput` (the `lisa` stage uses the same). LiSA goes on the deepest
``--fraction`` of layers (never layer 0). Q/K parameter and FLOP compression come from
`lisa_report` (FLOPs at each sequence length; they count FFN_heads work per key, so at long
contexts and small head_dim LiSA's Q/K FLOPs can exceed the original's).

    python -m benchmarks.lisa_throughput --threads 2 --seq-lens 128 512 1024 --json reports/bench/lisa.json
    python -m benchmarks.lisa_throughput --model models/base_lm/model --fraction 0.25
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local HF Llama checkpoint; default: a random tiny-ish Llama")
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of layers to replace, deepest first")
    parser.add_argument("--mode", default="full", choices=["full", "share", "align", "lowrank"])
    parser.add_argument("--rank", type=int, default=None, help="per-head rank (default about head_dim / 6)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                        help="attention implementation of the base model (and of LiSA's untouched layers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def build_base(args) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    else:
        torch.manual_seed(args.seed)
        config = LlamaConfig(vocab_size=2048, hidden_size=256, num_hidden_layers=8, num_attention_heads=8,
                             intermediate_size=688, max_position_embeddings=max(args.seq_lens) + args.decode_tokens + 8)
        model = LlamaForCausalLM(config)
    model.set_attn_implementation(args.attn)
    return model.eval()


def replaced_layers(num_layers: int, fraction: float) -> list[int]:
    count = min(num_layers - 1, max(1, round(fraction * num_layers)))
    return list(range(num_layers - 1, num_layers - 1 - count, -1))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from pipelines.compression.costs import lisa_report
    from pipelines.compression.families import family_of
    from pipelines.compression.lisa import apply_lisa
    from pipelines.compression.throughput import measure_throughput

    base = build_base(args)
    if family_of(base).name != "llama":
        raise SystemExit("the throughput benchmark needs a causal LM (Llama family)")
    layers = replaced_layers(len(family_of(base).layers(base)), args.fraction)
    lisa = apply_lisa(copy.deepcopy(base), layers, rank=args.rank, mode=args.mode, seed=args.seed)
    measured = measure_throughput({"base": base, "lisa": lisa}, args.seq_lens, batch_size=args.batch_size,
                                  decode_tokens=args.decode_tokens, warmup=args.warmup, repeats=args.repeats,
                                  threads=args.threads, seed=args.seed)
    rows = []
    for row in measured:
        prefill, decode = row["prefill_tok_s"], row["decode_tok_s"]
        report = lisa_report(lisa, context_len=row["seq_len"])
        rows.append({
            "seq_len": row["seq_len"],
            "prefill_tok_s_base": prefill["base"], "prefill_tok_s_lisa": prefill["lisa"],
            "decode_tok_s_base": decode["base"], "decode_tok_s_lisa": decode["lisa"],
            "prefill_speedup": prefill["lisa"] / prefill["base"], "decode_speedup": decode["lisa"] / decode["base"],
            "qk_flop_ratio": report["qk_flop_ratio"],
        })
    report = lisa_report(lisa, context_len=max(args.seq_lens))
    print_table(args, layers, report, rows)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        out.write_text(json.dumps({"settings": settings, "layers": layers, "report": report, "rows": rows},
                                  indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")


def print_table(args, layers, report, rows) -> None:
    cfg = f"threads={args.threads} batch={args.batch_size} decode_tokens={args.decode_tokens} " \
          f"repeats={args.repeats} (median) attn={args.attn}"
    print(f"LiSA mode={report['mode']} rank={report['rank']} layers={layers}  [{cfg}]")
    print(f"Q/K params (replaced layers): {report['qk_params_original']:,} -> {report['qk_params_lisa']:,} "
          f"({report['qk_compression_ratio']:.2f}x smaller); LiSA params {report['lisa_parameter_count']:,} "
          f"= {100 * report['trainable_fraction']:.3f}% of {report['total_parameters']:,}; "
          f"key cache/token {report['key_cache_per_token_original']} -> {report['key_cache_per_token_lisa']} floats")
    header = f"{'seq':>6} | {'prefill tok/s base':>18} {'lisa':>10} {'ratio':>6} | " \
             f"{'decode tok/s base':>17} {'lisa':>8} {'ratio':>6} | {'Q/K FLOP ratio':>14}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['seq_len']:>6} | {r['prefill_tok_s_base']:>18.0f} {r['prefill_tok_s_lisa']:>10.0f} "
              f"{r['prefill_speedup']:>6.2f} | {r['decode_tok_s_base']:>17.1f} {r['decode_tok_s_lisa']:>8.1f} "
              f"{r['decode_speedup']:>6.2f} | {r['qk_flop_ratio']:>14.2f}")
    print("ratio = LiSA / base throughput (>1 faster); Q/K FLOP ratio = original / LiSA per token (>1 cheaper)")


if __name__ == "__main__":
    main()
