"""LiSA training on 2 gloo ranks (spawned) is the one-process run at twice the batch.

Rank r trains on batch s * 2 + r of the one-process batch stream and the backend averages the
gradients. With equal-length sequences (no padding) and a loss that is a mean over rows and tokens,
the mean of the two ranks' batch losses is the loss of their union, so 2 ranks at batch size B
follow one process at batch size 2B up to float rounding. Slow: it starts a process group.
"""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from pipelines.compression.lisa import apply_lisa
from pipelines.compression.train import LisaTrainConfig, train_lisa
from tests.rlhf.ranks_harness import run_ranks

pytestmark = pytest.mark.slow


def _teacher() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=64, max_position_embeddings=128,
                         initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


def _sequences() -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)
    return torch.randint(3, 64, (16, 10), generator=gen).tolist()


def _fit(batch_size: int) -> dict:
    torch.set_num_threads(1)
    teacher = _teacher()
    model = apply_lisa(copy.deepcopy(teacher), [2, 3], mode="full", seed=1)
    cfg = LisaTrainConfig(max_steps=6, batch_size=batch_size, lr=3e-2, lm_weight=1.0, distill_weight=0.5,
                          progress=False)
    history = train_lisa(model, _sequences(), cfg, teacher=teacher)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(_sequences())).logits
    return {"history": history, "logits": logits,
            "weights": {k: v.clone() for k, v in model.state_dict().items() if ".lisa_" in k}}


def test_two_ranks_follow_one_process_at_twice_the_batch(tmp_path):
    """Fails if LiSA's gradients are not averaged over ranks (the ranks' weights drift apart and from one
    process), if a rank trains on another batch than s * world + rank of the one-process stream, or
    if the logged losses are not the ranks' mean."""
    ranked = run_ranks(_fit, (4,), tmp_path)
    threads = torch.get_num_threads()
    try:
        single = _fit(8)
    finally:
        torch.set_num_threads(threads)
    # The trained models are compared by what they compute: a head's score bias `b2` shifts all of
    # that head's scores alike, which softmax ignores, so its gradient is rounding noise that Adam
    # turns into lr-sized steps of either sign; every other LiSA weight agrees to ~1e-7.
    for result in ranked:
        assert result["history"]["loss"] == pytest.approx(single["history"]["loss"], rel=1e-4, abs=1e-6)
        assert torch.allclose(result["logits"], single["logits"], atol=1e-4, rtol=1e-4)
    assert all(torch.equal(ranked[0]["weights"][k], ranked[1]["weights"][k]) for k in single["weights"])
