"""The DeepSpeed backend of the loop on 2 ranks over gloo (ZeRO 0 and ZeRO 2), against one process.

One torchrun launch of tests/training/ranked_loop_worker.py trains the token-mean toy of
ranked_stage.py at batch 2 per rank, straight and crashed-then-resumed, for both ZeRO stages; the
one-process references (batch 4, the same engine) run in this process. Tolerance 1e-5 between 2
ranks and 1 process (half-batch sums and the all-reduce round differently); a resume from the
2-rank checkpoint must match the straight 2-rank run to 1e-6 (DeepSpeed's own checkpoint round trip).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.project import REPO
from tests.training.ranked_loop_worker import BACKENDS, SEED, N, backend_steps, config
from tests.training.ranked_stage import token_mean_loss, toy_data, toy_model

from tests.training.deepspeed_extra import requires_deepspeed

pytestmark = [pytest.mark.slow, requires_deepspeed]
TOL = 1e-5
ZEROS = (0, 2)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tests.training.ranked_loop_worker", str(out), *map(str, ZEROS)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _one_process(zero: int) -> tuple[list[list[int]], list[dict], dict]:
    seen: list[list[int]] = []

    def loss_fn(model, batch):
        seen.append([int(i) for i in batch["idx"]])
        return token_mean_loss(model, batch)

    from pipelines.training.loop import train

    model = toy_model(SEED)
    result = train(model, toy_data(SEED, N), loss_fn, config(zero, 4), progress=False)
    return seen, result.history, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank_rows(out: Path, zero: int, run: str) -> list[dict]:
    return [json.loads((out / f"z{zero}-{run}-rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("zero", ZEROS)
def test_deepspeed_two_ranks_equal_one_process_and_resume(two_ranks, zero):
    """Fails if the engine's ranks see other examples than one process at twice the batch (union per
    step), if the loop's token weighting does not reach DeepSpeed's backward (losses, weights), if
    counts are not summed over ranks, if a save is not joined by every rank (ZeRO 2 writes one optimizer
    partition per rank; a missing one breaks the resume), or if the resume restores less than it saved."""
    seen, history, weights = _one_process(zero)
    straight = _rank_rows(two_ranks, zero, "straight")
    for step, indices in enumerate(seen):
        assert straight[0]["seen"][step] + straight[1]["seen"][step] == indices
    for a, b in zip(history, straight[0]["history"], strict=True):
        assert a["examples_seen"] == b["examples_seen"] and a["train_target_tokens"] == b["train_target_tokens"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=TOL)
    assert straight[0]["history"] == straight[1]["history"]  # every rank reports the reduced numbers
    two = load_file(str(two_ranks / f"z{zero}-straight.safetensors"))
    for key, value in weights.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=TOL)

    resumed = _rank_rows(two_ranks, zero, "resumed")
    assert [row["resumed_from_step"] for row in resumed] == [1, 1]
    assert [len(row["seen"]) for row in resumed] == [1, 1]  # only step 2 ran after the resume
    assert [row["seen"][0] for row in resumed] == [row["seen"][1] for row in straight]
    again = load_file(str(two_ranks / f"z{zero}-resumed.safetensors"))
    for key, value in two.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6)
    for a, b in zip(resumed[0]["history"], straight[0]["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_make_backend_averages_gradients_over_ranks(two_ranks, kind):
    """What PPO's data-parallel update relies on: two ranks stepping `make_backend` on their `shard` of 8
    examples (token-weighted with `rank_scale`) end where one process stepping on all 8 does. Fails if
    the torch backend does not average gradients (or does not start ranks from rank 0's weights), if
    DeepSpeed's reduction is bypassed, or if `rank_scale` does not weight ranks by their token share."""
    reference = backend_steps(kind, toy_data(SEED, 8))
    two = load_file(str(two_ranks / f"backend-{kind}.safetensors"))
    for key, value in reference.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=TOL)
