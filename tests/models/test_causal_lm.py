import pytest
import torch

from pipelines.models.causal_lm import build_llama, count_parameters, load_causal_lm, save_causal_lm
from pipelines.models.tokenizer import load_tokenizer


def test_build_uses_tokenizer(tokenizer, tiny_cfg):
    model = build_llama(tiny_cfg, tokenizer, seed=0)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.dtype == torch.float32
    n = count_parameters(model)
    assert n == sum(p.numel() for p in model.parameters()) and n > 0


def test_seeded_init_and_rng_untouched(tokenizer, tiny_cfg):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_llama(tiny_cfg, tokenizer, seed=7)
    assert torch.equal(before, torch.get_rng_state())
    b = build_llama(tiny_cfg, tokenizer, seed=7)
    c = build_llama(tiny_cfg, tokenizer, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_key(tokenizer, tiny_cfg):
    with pytest.raises(ValueError, match="hiden_size"):
        build_llama({**tiny_cfg, "hiden_size": 3}, tokenizer)
    with pytest.raises(ValueError, match="vocab_size"):
        build_llama({**tiny_cfg, "vocab_size": 3}, tokenizer)


def test_save_load_identical_logits(tokenizer, tiny_cfg, tmp_path):
    model = build_llama(tiny_cfg, tokenizer, seed=0).eval()
    out = tmp_path / "ckpt"
    save_causal_lm(model, tokenizer, str(out))
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    loaded = load_causal_lm(str(out))
    assert not loaded.training and loaded.dtype == torch.float32
    ids = torch.tensor([tokenizer("the cat sees a red box.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    tok = load_tokenizer(str(out))
    assert tok.decode(ids[0].tolist()) == "the cat sees a red box."


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_causal_lm(str(tmp_path / "missing_dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a HF checkpoint"):
        load_causal_lm(str(tmp_path / "empty"))
