import json

import pytest
import torch

from pipelines.data.lm_data import collate_blocks, pack_corpus
from pipelines.evaluation.perplexity import perplexity
from pipelines.models.causal_lm import build_llama, causal_lm_loss
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train


@pytest.fixture(scope="module")
def blocks(tokenizer, corpus):
    return pack_corpus(corpus, tokenizer, block_size=32)


def _cfg(**kw):
    base = dict(lr=3e-3, weight_decay=0.01, warmup_steps=2, max_steps=8, batch_size=4, grad_accum_steps=1,
                max_grad_norm=1.0, log_every=1, seed=0)
    base.update(kw)
    return TrainConfig.from_dict(base)


def _run(tokenizer, tiny_cfg, blocks, cfg, **kw):
    model = build_llama(tiny_cfg, tokenizer, seed=0)
    res = train(model, blocks, causal_lm_loss, cfg, collate_fn=collate_blocks, progress=False, **kw)
    return model, res


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="zero"):
        TrainConfig.from_dict({"deepspeed": {"zero": 2}})


def test_loss_goes_down(tokenizer, tiny_cfg, blocks):
    held_out = blocks[-8:]
    model, res = _run(
        tokenizer, tiny_cfg, blocks[:-8], _cfg(max_steps=30, eval_every=10, log_every=5),
        eval_fn=lambda m: {"ppl": perplexity(m, held_out, batch_size=4)},
    )
    rows = [r for r in res.history if "train_loss" in r]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 1.0
    evals = [r["eval_ppl"] for r in res.history if "eval_ppl" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert res.final_metrics["eval_ppl"] == evals[-1]
    assert res.steps == 30 and res.examples_seen == 30 * 4 and res.tokens_seen == 30 * 4 * 32
    assert not res.stopped_by_time_budget and model.training


def test_grad_accum_equivalence(tokenizer, tiny_cfg, blocks):
    a, _ = _run(tokenizer, tiny_cfg, blocks, _cfg(max_steps=1, batch_size=4, grad_accum_steps=1))
    b, _ = _run(tokenizer, tiny_cfg, blocks, _cfg(max_steps=1, batch_size=2, grad_accum_steps=2))
    init = build_llama(tiny_cfg, tokenizer, seed=0).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], init[k]) for k in sa)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def test_deterministic_twice(tokenizer, tiny_cfg, blocks):
    a, ra = _run(tokenizer, tiny_cfg, blocks, _cfg(max_steps=4))
    b, rb = _run(tokenizer, tiny_cfg, blocks, _cfg(max_steps=4))
    assert [r["train_loss"] for r in ra.history] == [r["train_loss"] for r in rb.history]
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


class _Crash(RuntimeError):
    pass


def test_checkpoint_resume_identity(tokenizer, tiny_cfg, blocks, tmp_path):
    # few blocks so the run crosses an epoch boundary
    data = blocks[:10]
    cfg = _cfg(max_steps=8, checkpoint_every=2, batch_size=3)
    straight, rs = _run(tokenizer, tiny_cfg, data, cfg)

    calls = {"n": 0}

    def crashing_loss(model, batch):
        calls["n"] += 1
        if calls["n"] > 4:  # dies during step 5, after the step-4 checkpoint
            raise _Crash()
        return causal_lm_loss(model, batch)

    ckpt = tmp_path / "ckpt"
    model = build_llama(tiny_cfg, tokenizer, seed=0)
    with pytest.raises(_Crash):
        train(model, data, crashing_loss, cfg, collate_fn=collate_blocks, checkpoint_dir=str(ckpt), progress=False)
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_00000002", "step_00000004"]
    files = sorted(p.name for p in (ckpt / "step_00000004").iterdir())
    assert files == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "rng.safetensors", "state.json"]
    assert json.loads((ckpt / "step_00000004" / "state.json").read_text())["step"] == 4

    torch.manual_seed(999)  # a fresh process would have arbitrary RNG state
    resumed = build_llama(tiny_cfg, tokenizer, seed=1)
    rr = train(resumed, data, causal_lm_loss, cfg, collate_fn=collate_blocks, checkpoint_dir=str(ckpt), progress=False)
    assert rr.resumed_from_step == 4 and rr.steps == 8
    sa, sb = straight.state_dict(), resumed.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert [r["train_loss"] for r in rr.history] == [r["train_loss"] for r in rs.history]
    assert rr.examples_seen == rs.examples_seen


def test_time_budget_stops_and_resumes(tokenizer, tiny_cfg, blocks, tmp_path):
    cfg = _cfg(max_steps=5, time_budget_s=0.0)
    model, res = _run(tokenizer, tiny_cfg, blocks, cfg, checkpoint_dir=str(tmp_path))
    assert res.stopped_by_time_budget and res.steps == 0
    assert res.history[-1]["stopped_by_time_budget"] is True
    cfg2 = _cfg(max_steps=5)
    model, res = _run(tokenizer, tiny_cfg, blocks, cfg2, checkpoint_dir=str(tmp_path))
    assert res.steps == 5 and not res.stopped_by_time_budget
