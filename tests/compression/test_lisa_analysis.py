import math

import numpy as np
import pytest
import torch

from pipelines.compression import analysis
from pipelines.compression.lisa import apply_lisa

IDS = torch.randint(3, 64, (2, 10), generator=torch.Generator().manual_seed(4))


def _permuted_copy_model(tiny_llama, perm, layer=1):
    """Layer ``layer`` writes nothing to the residual stream, so layer+1 sees the same input; its
    Q/K heads are layer's heads reordered by ``perm`` (head b of layer+1 = head perm[b] of layer)."""
    model = tiny_llama(init=0.5)
    src, dst = model.model.layers[layer], model.model.layers[layer + 1]
    with torch.no_grad():
        src.self_attn.o_proj.weight.zero_()
        src.mlp.down_proj.weight.zero_()
        dst.input_layernorm.weight.copy_(src.input_layernorm.weight)
        for name in ("q_proj", "k_proj"):
            blocks = getattr(src.self_attn, name).weight.view(4, 8, 32)
            getattr(dst.self_attn, name).weight.copy_(blocks[perm].reshape(32, 32))
    return model


@pytest.mark.parametrize("metric", analysis.METRICS)
def test_best_matching_recovers_a_head_permutation(tiny_llama, metric):
    perm = [2, 0, 3, 1]
    model = _permuted_copy_model(tiny_llama, perm)
    result = analysis.layer_pair_similarity(model, IDS, metric=metric)
    pair = result["pairs"][1]  # layers 1 -> 2
    assert pair["layer"] == 2 and pair["permutation"] == perm
    assert pair["matched"] == pytest.approx(1.0, abs=1e-6)
    assert pair["same_index"] < pair["matched"]
    assert analysis.head_permutations(result)[2] == perm


def test_matched_similarity_is_never_below_same_index(tiny_llama):
    mask = torch.ones_like(IDS)
    mask[0, 7:] = 0
    for metric in analysis.METRICS:
        result = analysis.layer_pair_similarity(tiny_llama(seed=3, init=0.5), IDS, mask, metric=metric)
        assert len(result["pairs"]) == 3
        for pair in result["pairs"]:
            assert pair["matrix"].shape == (4, 4)
            assert pair["matched"] >= pair["same_index"] - 1e-12
            assert sorted(pair["permutation"]) == [0, 1, 2, 3]


def test_capture_returns_probabilities_and_scores(tiny_llama):
    captured = analysis.capture_attention(tiny_llama(), IDS)
    assert len(captured["probs"]) == len(captured["scores"]) == 4
    probs = captured["probs"][2]
    assert probs.shape == (2, 4, 10, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(probs[0, 0], k=1) == 0)  # causal
    assert np.any(np.triu(captured["scores"][2][0, 0], k=1) != 0)  # scores are pre-mask


def test_head_similarity_of_identical_maps_is_one():
    p = np.random.default_rng(0).dirichlet(np.ones(6), size=(1, 3, 6))
    for metric in analysis.METRICS:
        np.testing.assert_allclose(np.diag(analysis.head_similarity(p, p, metric=metric)), 1.0, atol=1e-9)


def test_sensitivity_and_plots(tiny_llama, token_data, tmp_path):
    model = tiny_llama(init=0.5)
    sens = analysis.layer_sensitivity(model, token_data(8))
    assert sens["layers"] == [0, 1, 2, 3] and math.isnan(sens["ppl"][0])
    assert all(p > 0 for p in sens["ppl"][1:])
    assert sens["relative_increase"][2] == pytest.approx(sens["ppl"][2] / sens["base_ppl"] - 1)
    assert type(model.model.layers[2].self_attn).__name__ == "LlamaAttention"  # restored
    similarity = analysis.layer_pair_similarity(model, IDS)
    grid = analysis.plot_similarity_grid(similarity, tmp_path / "sim.png")
    bars = analysis.plot_sensitivity(sens, tmp_path / "sens.png")
    for path in (grid, bars):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_skips_layers_already_replaced(tiny_llama, token_data):
    model = apply_lisa(tiny_llama(), [3], mode="full")
    sens = analysis.layer_sensitivity(model, token_data(4))
    assert math.isnan(sens["ppl"][3]) and not math.isnan(sens["ppl"][2])


def test_bert_analysis(tiny_bert, token_data):
    model = tiny_bert(init=0.5)
    mask = torch.ones_like(IDS)
    mask[1, 5:] = 0
    result = analysis.layer_pair_similarity(model, IDS, mask)
    assert [p["layer"] for p in result["pairs"]] == [1, 2]
    probs = analysis.capture_attention(model, IDS, mask)["probs"][0]
    assert np.all(probs[1, :, :, 5:] < 1e-6)  # padded keys get no attention
    sens = analysis.layer_sensitivity(model, token_data(6), mask_token_id=63)
    assert math.isnan(sens["ppl"][0]) and all(p > 0 for p in sens["ppl"][1:])
