"""The likelihood-anchored visual reward model: LM head on response positions only vs on every position.

Not a test: it prints numbers measured in one run on this machine (CPU, one thread by default).
`mean_response_logprob` runs the LM head on the response positions only; the baseline, measured in
the same run, is the first version (head and log-softmax over every position, image and prompt
included, then masked). Both must give the same rewards (the max difference is printed), and the
ratio is the median seconds per training step (forward + backward on `--batch` pairs), old / new,
the two alternating so machine noise hits both alike.

Needs a workspace where `make run` (or the visual stages) ran:

    python -m benchmarks.visual_rm_anchor --workspace . --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import pipelines.models.reward.visual as visual_rm
from benchmarks.machine import cpu_model
from pipelines.data.jsonl import read_jsonl
from pipelines.models.reward.visual import VisualRewardModel, pairwise_loss
from pipelines.models.vlm.encoding import collate_pairs
from pipelines.models.vlm.llava import load_vlm
from pipelines.visual.images import ImageStore

RESPONSE_ONLY = visual_rm.mean_response_logprob


def every_position_logprob(vlm, hidden, input_ids, attention_mask, response_start):
    """The baseline: logits at every position, masked to the response afterwards."""
    logits = vlm.get_output_embeddings()(hidden[:, :-1]).float()
    token_logprob = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(1, input_ids.shape[1]).unsqueeze(0)
    in_response = (positions >= response_start.unsqueeze(1)) & attention_mask[:, 1:].bool()
    return (token_logprob * in_response).sum(1) / in_response.sum(1).clamp(min=1)


def step_seconds(rm, batches, fn) -> float:
    visual_rm.mean_response_logprob = fn
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss, _ = pairwise_loss(rm, batch)
        loss.backward()
        rm.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, default=Path("."))
    ap.add_argument("--batch", type=int, default=16, help="pairs per step (visual.rm phases: 16)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = args.workspace
    policy = root / "models/visual_policy/model"
    images = ImageStore.for_model(root / "data/visual", policy)
    records = read_jsonl(root / "data/visual_select/visual_train.jsonl")[:args.batch * args.steps]
    vlm, tokenizer = load_vlm(str(policy))
    rm = VisualRewardModel(vlm, tokenizer, 160, likelihood_anchor=True)
    examples = rm.examples(records, images)
    batches = [collate_pairs(examples[i:i + args.batch], rm.pad_id) for i in range(0, len(examples), args.batch)]
    with torch.no_grad():
        visual_rm.mean_response_logprob = every_position_logprob
        old = torch.cat([rm(**b) for b in batches])
        visual_rm.mean_response_logprob = RESPONSE_ONLY
        new = torch.cat([rm(**b) for b in batches])
    print(f"CPU: {cpu_model()}, torch {torch.__version__}")
    print(f"max |reward difference| over {old.numel()} rewards: {float((old - new).abs().max()):.2e}")
    runs = {"every position": [], "response only": []}
    for _ in range(args.repeats):
        runs["every position"].append(step_seconds(rm, batches, every_position_logprob))
        runs["response only"].append(step_seconds(rm, batches, RESPONSE_ONLY))
    visual_rm.mean_response_logprob = RESPONSE_ONLY
    base, fast = (statistics.median(v) for v in runs.values())
    print(f"s/step (median of {args.repeats} x {len(batches)} steps, {args.batch} pairs, {args.threads} thread(s)): "
          f"every position {base:.4f}, response only {fast:.4f}, ratio x{base / fast:.2f}")


if __name__ == "__main__":
    main()
