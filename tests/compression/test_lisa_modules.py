import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pipelines.compression.families import family_of
from pipelines.compression.attention import HeadFFN, LisaAttention, ScoreAttention
from pipelines.compression.costs import lisa_report
from pipelines.compression.lisa import MODES, apply_lisa, default_rank, lisa_parameter_count, recording_attention

IDS = torch.randint(3, 64, (2, 9), generator=torch.Generator().manual_seed(1))


def _perturb_lisa(model, scale=0.2, seed=0):
    """Move LiSA parameters away from their init so tests exercise non-trivial maps."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lisa_" in name:
                p.add_(torch.randn(p.shape, generator=gen) * scale)


@pytest.mark.parametrize("mode", MODES)
def test_shapes_per_mode(tiny_llama, mode):
    model = apply_lisa(tiny_llama(), [2, 3], rank=2, mode=mode)
    with torch.no_grad(), recording_attention(model) as captured:
        logits = model(IDS, use_cache=False).logits
    assert logits.shape == (2, 9, 64)
    assert captured[3]["probs"].shape == captured[3]["scores"].shape == (2, 4, 9, 9)
    attn = model.model.layers[3].self_attn
    assert isinstance(attn, LisaAttention) and not hasattr(attn, "q_proj") and not hasattr(attn, "k_proj")
    if mode in ("full", "lowrank"):
        assert attn.lisa_q.shape == attn.lisa_k.shape == (4 * 2, 32)
    assert hasattr(attn, "lisa_ffn") == (mode in ("full", "align"))
    assert isinstance(model.model.layers[1].self_attn, ScoreAttention) == (mode != "lowrank")


def test_eager_source_layer_matches_hf_attention(tiny_llama):
    base = tiny_llama()
    with torch.no_grad():
        expected = base(IDS, use_cache=False).logits
        with recording_attention(base):
            recorded = base(IDS, use_cache=False).logits
    torch.testing.assert_close(recorded, expected, atol=1e-5, rtol=0)
    assert type(base.model.layers[0].self_attn).__name__ == "LlamaAttention"  # restored


def test_share_mode_uses_previous_layer_probabilities(tiny_llama):
    base = tiny_llama()
    model = apply_lisa(copy.deepcopy(base), [2], mode="share")
    layer = model.model.layers[2]
    seen = {}
    layer.register_forward_pre_hook(lambda mod, args: seen.__setitem__("x", args[0]))
    layer.register_forward_hook(lambda mod, args, out: seen.__setitem__("y", out))
    with torch.no_grad(), recording_attention(model) as captured:
        model(IDS, use_cache=False)
        with recording_attention(base) as base_captured:
            base(IDS, use_cache=False)
    p_prev = captured[1]["probs"]
    assert torch.equal(captured[2]["probs"], p_prev)
    torch.testing.assert_close(p_prev, base_captured[1]["probs"], atol=1e-6, rtol=0)
    with torch.no_grad():  # layer 2 by hand: layer 1's probabilities with layer 2's V and O
        x = seen["x"]
        h = layer.input_layernorm(x)
        v = layer.self_attn.v_proj(h).view(2, 9, 4, 8).transpose(1, 2)
        attn = layer.self_attn.o_proj((p_prev @ v).transpose(1, 2).reshape(2, 9, 32))
        y = x + attn
        y = y + layer.mlp(layer.post_attention_layernorm(y))
    torch.testing.assert_close(seen["y"], y, atol=1e-6, rtol=0)


def test_permutation_init_reproduces_permuted_scores_exactly(tiny_llama):
    perm = [2, 0, 3, 1]
    model = apply_lisa(tiny_llama(), [2, 3], mode="full", permutations={2: perm, 3: [1, 2, 3, 0]})
    with torch.no_grad(), recording_attention(model) as captured:
        model(IDS, use_cache=False)
    assert torch.equal(captured[2]["scores"], captured[1]["scores"][:, perm])  # chain: 3 reads 2
    assert torch.equal(captured[3]["scores"], captured[2]["scores"][:, [1, 2, 3, 0]])


@pytest.mark.parametrize("hidden", [8, 13])
def test_head_ffn_starts_as_exact_permutation(hidden):
    ffn = HeadFFN(4, hidden, [3, 1, 0, 2], generator=torch.Generator().manual_seed(0))
    scores = torch.randn(2, 4, 5, 6) * 10
    assert torch.equal(ffn(scores), scores[:, [3, 1, 0, 2]])
    with pytest.raises(ValueError, match="permutation"):
        HeadFFN(4, 8, [0, 0, 1, 2])


def test_head_ffn_inference_blocks_match_autograd_path(monkeypatch):
    ffn = HeadFFN(4, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in ffn.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    scores = torch.randn(3, 4, 5, 7)
    with_grad = ffn(scores)
    monkeypatch.setattr(HeadFFN, "BLOCK", 8)  # several (ragged) blocks per batch row
    with torch.no_grad():
        blocked = ffn(scores)
    torch.testing.assert_close(blocked, with_grad, atol=1e-6, rtol=1e-6)


def test_lowrank_init_matches_original_bilinear_form_at_full_rank(tiny_bert):
    base = tiny_bert()
    with torch.no_grad():
        for layer in base.bert.encoder.layer:
            layer.attention.self.query.bias.zero_()
            layer.attention.self.key.bias.zero_()
    model = apply_lisa(copy.deepcopy(base), [2], rank=8, mode="lowrank")  # rank = head_dim: exact
    with torch.no_grad(), recording_attention(model) as ours, recording_attention(base) as theirs:
        model(IDS)
        base(IDS)
    torch.testing.assert_close(ours[2]["scores"], theirs[2]["scores"], atol=1e-5, rtol=1e-5)


def test_only_lisa_parameters_train(tiny_llama):
    model = apply_lisa(tiny_llama(), [1, 3], mode="full")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lisa_" in n for n in trainable)
    assert {n.split(".self_attn.")[0] for n in trainable} == {"model.layers.1", "model.layers.3"}
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == lisa_parameter_count(model)


def test_apply_validates_arguments(tiny_llama):
    with pytest.raises(ValueError, match="layer 0"):
        apply_lisa(tiny_llama(), [0])
    with pytest.raises(ValueError, match="mode"):
        apply_lisa(tiny_llama(), [1], mode="nope")
    model = apply_lisa(tiny_llama(), [3])
    with pytest.raises(ValueError, match="already"):
        apply_lisa(model, [3])
    with pytest.raises(ValueError, match="mode="):
        apply_lisa(model, [2], mode="share")


def test_adding_layers_below_a_replaced_layer_keeps_the_chain(tiny_llama):
    once = apply_lisa(tiny_llama(), [2, 3], mode="full")
    _perturb_lisa(once)
    twice = apply_lisa(apply_lisa(tiny_llama(), [3], mode="full"), [2], mode="full")
    twice.load_state_dict(once.state_dict())  # strict: the two module trees are the same
    assert twice.lisa_state.layers == [2, 3] and twice.model.layers[2].self_attn.publish
    assert isinstance(twice.model.layers[1].self_attn, ScoreAttention)
    with torch.no_grad():
        assert torch.equal(once(IDS, use_cache=False).logits, twice(IDS, use_cache=False).logits)


def test_report_counts_and_ratios(tiny_llama):
    model = apply_lisa(tiny_llama(kv_heads=2), [2, 3], mode="full")
    report = lisa_report(model, context_len=16)
    rank, heads, d, hd, hidden = default_rank(family_of(model).geometry(model)), 4, 32, 8, 8
    per_layer = 2 * heads * rank * d + (2 * heads * hidden + hidden + heads)
    assert rank == 1 and report["lisa_parameter_count"] == 2 * per_layer
    assert report["qk_params_original"] == 2 * d * (4 + 2) * hd
    assert report["qk_compression_ratio"] == pytest.approx(report["qk_params_original"] / (2 * per_layer))
    assert report["trainable_fraction"] == pytest.approx(report["lisa_parameter_count"] / report["total_parameters"])
    assert report["qk_flop_ratio"] > 0 and report["key_cache_per_token_lisa"] == 2 * heads * rank
    shared = lisa_report(apply_lisa(tiny_llama(), [3], mode="share"))
    assert shared["lisa_parameter_count"] == 0 and math.isinf(shared["qk_compression_ratio"])


def test_unsupported_model_names_its_class():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=32, n_positions=16))
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        apply_lisa(gpt2, [1])


@pytest.mark.parametrize("mode", MODES)
def test_bert_apply_and_forward(tiny_bert, mode):
    model = apply_lisa(tiny_bert(), [1, 2], mode=mode)
    _perturb_lisa(model)
    mask = torch.ones_like(IDS)
    mask[1, 6:] = 0
    with torch.no_grad():
        out = model(IDS, attention_mask=mask).logits
    assert out.shape == (2, 9, 64) and torch.isfinite(out).all()
    assert isinstance(model.bert.encoder.layer[2].attention.self, LisaAttention)
    bare = apply_lisa(tiny_bert(head=False), [2], mode=mode)
    with torch.no_grad():
        assert bare(IDS, attention_mask=mask).last_hidden_state.shape == (2, 9, 32)
