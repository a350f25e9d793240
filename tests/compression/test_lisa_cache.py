import pytest
import torch
from transformers import DynamicCache

from pipelines.compression.lisa import MODES, apply_lisa

PROMPT = torch.randint(3, 64, (2, 7), generator=torch.Generator().manual_seed(2))


def _lisa_model(tiny_llama, mode, layers=(2, 3), kv_heads=4):
    model = apply_lisa(tiny_llama(kv_heads=kv_heads), list(layers), rank=2, mode=mode)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the (permutation, zero) init so every term matters
        for name, p in model.named_parameters():
            if ".lisa_" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@pytest.mark.parametrize("mode", MODES)
def test_greedy_generate_with_cache_equals_recompute(tiny_llama, mode):
    model = _lisa_model(tiny_llama, mode)
    mask = torch.ones_like(PROMPT)
    kw = dict(attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        cached = model.generate(PROMPT, use_cache=True, **kw)
        recomputed = model.generate(PROMPT, use_cache=False, **kw)
    assert cached.shape == (2, 17)
    assert torch.equal(cached, recomputed)


def test_generate_with_left_padding_and_gqa(tiny_llama):
    model = _lisa_model(tiny_llama, "full", layers=(1, 3), kv_heads=2)
    prompt = PROMPT.clone()
    mask = torch.ones_like(prompt)
    prompt[0, :3], mask[0, :3] = 0, 0
    kw = dict(attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    with torch.no_grad():
        assert torch.equal(model.generate(prompt, use_cache=True, **kw), model.generate(prompt, use_cache=False, **kw))


@pytest.mark.parametrize("mode", ["full", "share", "lowrank"])
def test_forward_logits_match_step_by_step_decoding(tiny_llama, mode):
    model = _lisa_model(tiny_llama, mode, layers=(1, 2, 3))
    with torch.no_grad():
        full = model(PROMPT, use_cache=False).logits
        cache = DynamicCache(config=model.config)
        steps = [model(PROMPT[:, :3], past_key_values=cache, use_cache=True).logits]  # prefill, then 1 by 1
        for t in range(3, PROMPT.shape[1]):
            steps.append(model(PROMPT[:, t : t + 1], past_key_values=cache, use_cache=True).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    keys = cache.layers[3].keys
    expected = (2, 4, 7, 2) if mode != "share" else (2, 1, 7, 1)  # low-rank keys or placeholder
    assert tuple(keys.shape) == expected
    assert cache.get_seq_length() == 7
