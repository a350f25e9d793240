"""Reward-model throughput: ours against TRL's RewardTrainer, same backbone, data, tokens and batch size.

Not a test: it prints ratios measured in one run on this machine. Training throughput is labeled
pairs per second over a fixed number of optimizer steps (setup excluded, one warm-up step each);
scoring throughput is pairs per second of inference. TRL trains a sequence-classification head on
the same causal-LM checkpoint (its standard recipe); we train our Bradley-Terry RM and GRAM stage 2
with the shared loop. Needs the `bench` extra: `pip install -e '.[bench]'`.

    python -m benchmarks.reward_throughput --model models/base_lm/model --pairs data/prefs/train.jsonl
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/base_lm/model", help="local HF causal-LM checkpoint")
    parser.add_argument("--pairs", default="data/prefs/train.jsonl", help="prompt/chosen/rejected JSONL")
    parser.add_argument("--n-pairs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="reports/bench/reward_throughput.json")
    return parser.parse_args()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_ours(kind: str, args, records) -> float:
    """Seconds for `steps` optimizer steps of our loop (after one warm-up step)."""
    from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_loss, collate_bt
    from pipelines.models.causal_lm import load_causal_lm
    from pipelines.models.reward import GenerativeRewardModel, collate_judge, gram_stage2_loss, preference_examples
    from pipelines.models.tokenizer import load_tokenizer
    from pipelines.training.config import TrainConfig
    from pipelines.training.loop import train

    lm, tok = load_causal_lm(args.model), load_tokenizer(args.model)
    if kind == "bt":
        rm = BTRewardModel(lm, tok, args.max_length)
        data, loss, collate = bt_examples(records, tok, args.max_length), bt_loss, partial(collate_bt, pad_id=rm.pad_id)
    else:
        rm = GenerativeRewardModel(lm, tok, args.max_length)
        data = preference_examples(records, tok, args.max_length)
        loss, collate = partial(gram_stage2_loss, eps=0.1), partial(collate_judge, pad_id=rm.pad_id)
    cfg = dict(lr=1e-4, weight_decay=0.0, batch_size=args.batch_size, max_grad_norm=1.0, log_every=10**6)
    train(rm, data, loss, TrainConfig(max_steps=1, **cfg), collate_fn=collate, progress=False)  # warm-up
    return _timed(lambda: train(rm, data, loss, TrainConfig(max_steps=args.steps, **cfg), collate_fn=collate,
                                progress=False))


def trl_model(args):
    from transformers import AutoModelForSequenceClassification

    from pipelines.models.tokenizer import load_tokenizer

    tok = load_tokenizer(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def train_trl(args, records) -> float:
    """Seconds for `steps` RewardTrainer steps (after a one-step warm-up run)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from pipelines.models.reward.bt import bt_examples

    model, tok = trl_model(args)
    rows = [{"chosen_ids": ex["chosen_ids"].tolist(), "rejected_ids": ex["rejected_ids"].tolist()}
            for ex in bt_examples(records, tok, args.max_length)]
    dataset = Dataset.from_list(rows)

    def trainer(steps: int, out: str) -> RewardTrainer:
        config = RewardConfig(output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=steps,
                              learning_rate=1e-4, logging_steps=10**6, save_strategy="no", report_to=[], use_cpu=True,
                              dataloader_num_workers=0, max_length=args.max_length, disable_tqdm=True)
        return RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tok)

    with tempfile.TemporaryDirectory() as out:
        trainer(1, out).train()  # warm-up
        run = trainer(args.steps, out)
        return _timed(run.train)


def score_ours(kind: str, args, records) -> float:
    from pipelines.models.reward.bt import BTRewardModel
    from pipelines.models.causal_lm import load_causal_lm
    from pipelines.models.reward import GenerativeRewardModel
    from pipelines.models.tokenizer import load_tokenizer

    lm, tok = load_causal_lm(args.model), load_tokenizer(args.model)
    rm = (BTRewardModel if kind == "bt" else GenerativeRewardModel)(lm, tok, args.max_length).eval()
    prompts, chosen, rejected = ([r[k] for r in records] for k in ("prompt", "chosen", "rejected"))
    rm.prob_first_better(prompts[:8], chosen[:8], rejected[:8], batch_size=args.batch_size)  # warm-up
    return _timed(lambda: rm.prob_first_better(prompts, chosen, rejected, batch_size=args.batch_size))


def score_trl(args, records) -> float:
    """The HF way to score with a TRL-trained RM: a padded forward of the classification model."""
    from pipelines.models.reward.bt import bt_examples

    model, tok = trl_model(args)
    model.eval()
    seqs = [ids.tolist() for ex in bt_examples(records, tok, args.max_length)
            for ids in (ex["chosen_ids"], ex["rejected_ids"])]

    def run():
        with torch.no_grad():
            for start in range(0, len(seqs), args.batch_size):
                batch = tok.pad({"input_ids": seqs[start:start + args.batch_size]}, return_tensors="pt")
                model(**batch)

    return _timed(run)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from pipelines.data.jsonl import read_jsonl

    records = read_jsonl(args.pairs)[: args.n_pairs]
    trained = args.steps * args.batch_size
    results = {
        "train_pairs_per_s": {"trl_reward_trainer": trained / train_trl(args, records),
                              "ours_bt": trained / train_ours("bt", args, records),
                              "ours_gram_stage2": trained / train_ours("gram", args, records)},
        "score_pairs_per_s": {"trl_seq_cls_forward": len(records) / score_trl(args, records),
                              "ours_bt": len(records) / score_ours("bt", args, records),
                              "ours_gram_swap_averaged": len(records) / score_ours("gram", args, records)},
    }
    results["setup"] = {k: getattr(args, k) for k in ("model", "n_pairs", "batch_size", "steps", "max_length", "threads")}
    for section, base in (("train_pairs_per_s", "trl_reward_trainer"), ("score_pairs_per_s", "trl_seq_cls_forward")):
        print(f"\n{section} ({args.threads} threads, batch {args.batch_size}, max_length {args.max_length})")
        for name, value in results[section].items():
            print(f"  {name:<26} {value:9.1f}   x{value / results[section][base]:.2f} vs {base}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
