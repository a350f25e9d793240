"""Training throughput at 1 vs N processes with the same global batch, and the share spent communicating.

Not a test: it prints ratios measured in one run on this machine. The workload is the base LM
stage's loop: a Llama of `base_lm.model` (params.yaml) trained with `causal_lm_loss` on packed
blocks of `base_lm.block_size` tokens, through the shared loop (`pipelines/training/loop.py`). Each
process count runs as real processes started the way a stage is (alignflow/runtime/launch.py:
torchrun --standalone, gloo on loopback, each rank `threads // N` threads), one warm-up step, then
`--steps` timed optimizer steps (setup excluded); the global batch is the same for every process
count (per-rank batch = global / N). Communication share = seconds inside the loop's collectives
(gradient all-reduce, loss/metric reductions; waiting for a slower rank included) over the timed
loop's wall time, averaged over ranks. Reported: median of `--repeats` per process count.

    python -m benchmarks.train_scaling                       # default model, 2 processes, 4 threads
    python -m benchmarks.train_scaling --tiny --steps 3 --repeats 1   # a quick check that it runs
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import cpu_model

TINY_MODEL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 128, "tie_word_embeddings": True}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="compared against 1 process")
    parser.add_argument("--global-batch", type=int, default=16, help="examples per optimizer step, all ranks")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads shared by the ranks")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and 32-token blocks (quick check)")
    parser.add_argument("--out", default="reports/bench/train_scaling.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one rank's result file
    return parser.parse_args(argv)


def workload(tiny: bool) -> tuple[dict, int]:
    """(Llama config, block size): the base LM stage's, from params.yaml, or the tiny one."""
    if tiny:
        return dict(TINY_MODEL), 32
    import yaml

    block = yaml.safe_load(Path("params.yaml").read_text())["base_lm"]
    return dict(block["model"]), int(block["block_size"])


def corpus(n: int, seed: int = 0) -> list[str]:
    """Seeded sentences of pseudo-words: enough distinct text for a BPE tokenizer and packed blocks."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(600)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 20))) + "." for _ in range(n)]


def worker(args: argparse.Namespace) -> None:
    """One rank: warm up, time `steps` steps of the loop, write (rank 0) the throughput and comm share."""
    import torch

    from pipelines.data.lm_data import collate_blocks, pack_corpus
    from pipelines.models.causal_lm import build_llama, causal_lm_loss
    from pipelines.models.tokenizer import train_bpe_tokenizer
    from pipelines.training import distributed
    from pipelines.training.config import TrainConfig
    from pipelines.training.loop import train

    here = distributed.init()
    model_cfg, block_size = workload(args.tiny)
    texts = corpus(3000)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=512, model_max_length=block_size)
    blocks = pack_corpus(texts, tokenizer, block_size)
    model = build_llama(model_cfg, tokenizer, seed=0)
    per_rank = args.global_batch // here.world
    cfg = dict(lr=1e-3, weight_decay=0.1, batch_size=per_rank, log_every=10**6, processes=here.world)
    train(model, blocks, causal_lm_loss, TrainConfig(max_steps=1, **cfg), collate_fn=collate_blocks, progress=False)
    result = train(model, blocks, causal_lm_loss, TrainConfig(max_steps=args.steps, **cfg),
                   collate_fn=collate_blocks, progress=False)
    share = result.comm_s / result.elapsed_s
    shares = distributed.gather([share])
    if here.is_main:
        Path(args.worker).write_text(json.dumps({
            "processes": here.world, "examples_per_s": result.examples_seen / result.elapsed_s,
            "tokens_per_s": result.tokens_seen / result.elapsed_s, "comm_share": sum(shares) / len(shares),
            "threads_per_rank": torch.get_num_threads(), "elapsed_s": result.elapsed_s}))


def run_once(args: argparse.Namespace, processes: int) -> dict:
    """Start `processes` ranks the way the stage launcher does and return rank 0's measurement."""
    from alignflow.runtime.launch import LaunchPlan, rank_env, torchrun_command

    with tempfile.TemporaryDirectory(prefix="train-scaling-") as tmp:
        result = Path(tmp) / "result.json"
        forwarded = ["--global-batch", str(args.global_batch), "--steps", str(args.steps), "--worker", str(result)]
        forwarded += ["--tiny"] if args.tiny else []
        plan = LaunchPlan(processes)
        base = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(torchrun_command(plan, "benchmarks.train_scaling", forwarded), check=True,
                       env=rank_env(plan, base, Path(tmp) / "errors"))
        return json.loads(result.read_text())


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.global_batch % args.processes:
        raise SystemExit(f"--global-batch {args.global_batch} must be divisible by --processes {args.processes}")
    counts = (1, args.processes)
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for repeat in range(args.repeats):
        for n in counts:  # interleaved, so drifting machine load hits both alike
            runs[n].append(run_once(args, n))
            print(f"repeat {repeat + 1}/{args.repeats}, {n} process(es): "
                  f"{runs[n][-1]['examples_per_s']:.1f} examples/s", file=sys.stderr)
    summary = {n: {"examples_per_s": statistics.median(r["examples_per_s"] for r in rows),
                   "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
                   "comm_share": statistics.median(r["comm_share"] for r in rows),
                   "threads_per_rank": rows[0]["threads_per_rank"]} for n, rows in runs.items()}
    one, many = summary[1], summary[args.processes]
    report = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": args.threads, "tiny": args.tiny,
              "global_batch": args.global_batch, "steps": args.steps, "repeats": args.repeats,
              "results": {str(n): s for n, s in summary.items()}, "runs": {str(n): r for n, r in runs.items()},
              "speedup": many["examples_per_s"] / one["examples_per_s"]}
    print(f"CPU: {report['cpu']} ({report['cpu_count']} cores), {args.threads} threads shared by the ranks")
    print(f"global batch {args.global_batch}, {args.steps} steps, median of {args.repeats}")
    for n, s in summary.items():
        print(f"{n} process(es) x {s['threads_per_rank']} thread(s): {s['examples_per_s']:8.1f} examples/s  "
              f"{s['tokens_per_s']:9.0f} tokens/s  communication {100 * s['comm_share']:5.1f}% of step time")
    print(f"ratio {args.processes} processes / 1 process: {report['speedup']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
