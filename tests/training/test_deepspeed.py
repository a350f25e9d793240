"""DeepSpeed engine path of the shared loop, on CPU with a single-process gloo group."""

import math

import pytest
import torch

from pipelines.data.lm_data import collate_blocks, pack_corpus
from pipelines.models.causal_lm import build_llama, causal_lm_loss
from pipelines.training.backends import deepspeed_config
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from tests.training.deepspeed_extra import requires_deepspeed

pytestmark = requires_deepspeed


def test_deepspeed_config_translation():
    cfg = TrainConfig(batch_size=3, grad_accum_steps=2, max_grad_norm=0.5,
                      deepspeed={"zero_stage": 2, "offload_optimizer": False, "bf16": False})
    ds = deepspeed_config(cfg)
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_accumulation_steps"] == 2
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["type"] == "AdamW" and ds["bf16"]["enabled"] is False


@pytest.mark.parametrize("stage", [0, 2])
def test_deepspeed_trains(tokenizer, corpus, tiny_cfg, stage, tmp_path):
    blocks = pack_corpus(corpus, tokenizer, block_size=32)
    fixed = blocks[:8]
    model = build_llama(tiny_cfg, tokenizer, seed=0)

    def fixed_loss():
        with torch.no_grad():
            return float(causal_lm_loss(model, collate_blocks(list(fixed)))[0])

    before = fixed_loss()
    cfg = TrainConfig(lr=3e-3, weight_decay=0.0, max_steps=4, batch_size=4, grad_accum_steps=2, log_every=1,
                      deepspeed={"zero_stage": stage, "offload_optimizer": False, "bf16": False})
    res = train(model, fixed, causal_lm_loss, cfg, collate_fn=collate_blocks, progress=False,
                checkpoint_dir=str(tmp_path))
    losses = [r["train_loss"] for r in res.history]
    assert res.steps == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert fixed_loss() < before
    assert (tmp_path / "step_00000004" / "deepspeed").is_dir()


def test_deepspeed_resume(tokenizer, corpus, tiny_cfg, tmp_path):
    blocks = pack_corpus(corpus, tokenizer, block_size=32)[:8]
    ds = {"zero_stage": 2, "offload_optimizer": False, "bf16": False}
    cfg = TrainConfig(lr=3e-3, max_steps=4, batch_size=4, log_every=1, checkpoint_every=2, deepspeed=ds)
    straight = build_llama(tiny_cfg, tokenizer, seed=0)
    train(straight, blocks, causal_lm_loss, cfg, collate_fn=collate_blocks, progress=False)

    first = build_llama(tiny_cfg, tokenizer, seed=0)
    calls = {"n": 0}

    def crashing_loss(model, batch):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("crash")
        return causal_lm_loss(model, batch)

    with pytest.raises(RuntimeError, match="crash"):
        train(first, blocks, crashing_loss, cfg, collate_fn=collate_blocks, progress=False,
              checkpoint_dir=str(tmp_path))
    resumed = build_llama(tiny_cfg, tokenizer, seed=5)
    res = train(resumed, blocks, causal_lm_loss, cfg, collate_fn=collate_blocks, progress=False,
                checkpoint_dir=str(tmp_path))
    assert res.resumed_from_step == 2 and res.steps == 4
    sa, sb = straight.state_dict(), resumed.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)
