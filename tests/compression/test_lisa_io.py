import json

import pytest
import torch
from safetensors.torch import load_file

from pipelines.compression.io import CONFIG_NAME, WEIGHTS_NAME, load_lisa_model, save_lisa_model
from pipelines.compression.attention import LisaAttention
from pipelines.compression.lisa import apply_lisa

IDS = torch.randint(3, 64, (2, 8), generator=torch.Generator().manual_seed(3))


def _trained_looking(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lisa_" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@pytest.mark.parametrize("mode", ["full", "share"])
def test_llama_round_trip_is_exact(tiny_llama, tmp_path, mode):
    model = _trained_looking(apply_lisa(tiny_llama(), [2, 3], rank=2, mode=mode))
    save_lisa_model(model, tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert meta["layers"] == [2, 3] and meta["mode"] == mode and meta["rank"] == 2 and meta["family"] == "llama"
    base_keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert not any(".lisa_" in k for k in base_keys)
    assert "model.layers.3.self_attn.q_proj.weight" not in base_keys
    assert "model.layers.1.self_attn.q_proj.weight" in base_keys
    rng = torch.random.get_rng_state()
    loaded = load_lisa_model(tmp_path)
    assert torch.equal(rng, torch.random.get_rng_state())  # loading does not consume the caller's RNG
    assert isinstance(loaded.model.layers[3].self_attn, LisaAttention) and not loaded.training
    with torch.no_grad():
        assert torch.equal(model(IDS, use_cache=False).logits, loaded(IDS, use_cache=False).logits)
        kw = dict(max_new_tokens=5, do_sample=False, attention_mask=torch.ones_like(IDS))
        assert torch.equal(model.generate(IDS, **kw), loaded.generate(IDS, **kw))
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if p.requires_grad}


def test_bert_round_trip_with_tied_embeddings(tiny_bert, tmp_path):
    model = _trained_looking(apply_lisa(tiny_bert(), [1, 2], mode="full"))
    assert model.config.tie_word_embeddings
    save_lisa_model(model, tmp_path)
    assert set(load_file(str(tmp_path / WEIGHTS_NAME))) == {n for n, _ in model.named_parameters() if ".lisa_" in n}
    loaded = load_lisa_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, loaded(IDS).logits)


def test_load_rejects_unknown_format_and_mismatch(tiny_llama, tmp_path):
    model = apply_lisa(tiny_llama(), [3])
    save_lisa_model(model, tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**meta, "layers": [2]}))
    with pytest.raises(ValueError, match="does not match"):
        load_lisa_model(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="format"):
        load_lisa_model(tmp_path)


def test_save_requires_lisa(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="apply_lisa"):
        save_lisa_model(tiny_llama(), tmp_path)
