"""One rank of the multi-process loop tests: `torchrun ... -m tests.training.ranked_loop_worker OUT ZERO...`.

For each DeepSpeed ZeRO stage given, every rank trains the token-mean toy of ranked_stage.py twice
through the shared loop: straight, and crashed after the first step's checkpoint then resumed in a
fresh model from that checkpoint. Rank r writes `OUT/z<stage>-<run>-rank<r>.json` (example indices
per micro-step, the history) and rank 0 also the final weights, `OUT/z<stage>-<run>.safetensors`.
Then, as PPO does, it drives `make_backend` directly (torch, and DeepSpeed ZeRO 2) for two steps on
this rank's `shard` of 8 examples, token-weighted with `rank_scale`: `OUT/backend-<kind>.safetensors`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from torch.utils.data import default_collate

from pipelines.training.backends import make_backend
from pipelines.training.config import TrainConfig
from pipelines.training.distributed import init, rank_scale, shard
from pipelines.training.loop import train
from tests.training.ranked_stage import token_mean_loss, toy_data, toy_model

SEED, N = 3, 24


def config(zero: int, batch_size: int) -> TrainConfig:
    return TrainConfig(lr=0.05, weight_decay=0.0, max_steps=2, batch_size=batch_size, log_every=1,
                       checkpoint_every=1, seed=SEED, deepspeed={"zero_stage": zero})


def run(zero: int, batch_size: int, checkpoint_dir: Path, crash_after: int = 0):
    """(indices per micro-step, TrainResult or None when it crashed, model)."""
    seen: list[list[int]] = []

    def loss_fn(model, batch):
        if crash_after and len(seen) >= crash_after:
            raise RuntimeError("crash")
        seen.append([int(i) for i in batch["idx"]])
        return token_mean_loss(model, batch)

    model = toy_model(SEED)
    try:
        result = train(model, toy_data(SEED, N), loss_fn, config(zero, batch_size),
                       checkpoint_dir=str(checkpoint_dir), progress=False)
    except RuntimeError as exc:
        if "crash" not in str(exc):
            raise
        result = None
    return seen, result, model


BACKENDS = {"torch": None, "z2": {"zero_stage": 2}}


def backend_steps(kind: str, examples: list[dict]) -> dict:
    """Two optimizer steps through `make_backend` on `examples` (this rank's shard); the final weights."""
    model = toy_model(SEED)
    cfg = TrainConfig(lr=0.05, weight_decay=0.1, max_steps=2, batch_size=len(examples), seed=SEED,
                      deepspeed=BACKENDS[kind])
    backend = make_backend(model, cfg)
    batch = default_collate(examples)
    for _ in range(2):
        loss, metrics = token_mean_loss(backend.module, batch)
        backend.micro_step(loss * rank_scale(metrics["target_tokens"]), True)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def main(out: Path, zeros: list[int]) -> None:
    here = init()
    for zero in zeros:
        outcomes = {"straight": run(zero, 2, out / f"ckpt-z{zero}-straight")}
        run(zero, 2, out / f"ckpt-z{zero}-resumed", crash_after=1)
        outcomes["resumed"] = run(zero, 2, out / f"ckpt-z{zero}-resumed")
        for name, (seen, result, model) in outcomes.items():
            row = {"seen": seen, "history": result.history, "resumed_from_step": result.resumed_from_step}
            (out / f"z{zero}-{name}-rank{here.rank}.json").write_text(json.dumps(row))
            if here.is_main:
                weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
                save_file(weights, str(out / f"z{zero}-{name}.safetensors"))
    for kind in BACKENDS:
        weights = backend_steps(kind, shard(toy_data(SEED, 8)))
        if here.is_main:
            save_file(weights, str(out / f"backend-{kind}.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), [int(z) for z in sys.argv[2:]])
