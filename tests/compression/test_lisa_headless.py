"""Layer selection for a model without an LM head (a bare BertModel): the embedding-similarity budget.

A head-less encoder has no perplexity, so `select_layers` keeps a replacement while the mean cosine
similarity of its mean-pooled sentence embeddings to the original's stays >= min_similarity.
"""
from __future__ import annotations

import pytest
import torch

from pipelines.compression.budget import (budget_for, check_min_similarity, has_lm_head, hidden_states, mean_pool,
                                          unrelated_similarity)
from pipelines.compression.objective import make_batches
from pipelines.compression.recipe import budget_summary, compress
from pipelines.compression.select import select_layers
from pipelines.compression.train import LisaTrainConfig

KD = LisaTrainConfig(max_steps=2, batch_size=8, lr=1e-2, lm_weight=0.0, distill_weight=1.0, progress=False)


def _select(model, token_data, threshold: float):
    return select_layers(model, token_data(8), token_data(8, seed=1), min_similarity=threshold, train_config=KD)


def test_head_detection_picks_the_budget(tiny_bert, tiny_llama, token_data):
    """A model with an LM head keeps the perplexity budget; a bare BertModel gets the similarity budget."""
    assert has_lm_head(tiny_bert()) and has_lm_head(tiny_llama()) and not has_lm_head(tiny_bert(head=False))
    val = token_data(4)
    assert budget_for(tiny_llama(), val, budget=0.02, min_similarity=0.9, batch_size=4).metric == "ppl"
    judge = budget_for(tiny_bert(head=False), val, budget=0.02, min_similarity=0.9, batch_size=4)
    assert (judge.metric, judge.base, judge.threshold) == ("similarity", 1.0, 0.9)
    assert judge.measure(tiny_bert(head=False))["similarity"] == pytest.approx(1.0, abs=1e-6)  # same weights
    assert judge.accepts(0.9) and not judge.accepts(0.8999)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    assert torch.allclose(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 1.0]]))


def test_unrelated_similarity_is_the_mean_over_distinct_pairs():
    mask = torch.ones(1, 1, dtype=torch.long)
    batches, refs = [(None, mask)] * 3, [torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]]),
                                         torch.tensor([[[1.0, 1.0]]])]
    assert unrelated_similarity(batches, refs) == pytest.approx((0.0 + 2 * 2 ** -0.5) / 3)


@pytest.mark.parametrize("bad", [1.5, -2.0, True, "0.9"])
def test_min_similarity_outside_minus_one_to_one_is_refused(bad):
    with pytest.raises(ValueError, match="min_similarity"):
        check_min_similarity(bad)


def test_bare_bert_selection_keeps_layers_while_similarity_holds(tiny_bert, token_data):
    """Accepted exactly when similarity >= threshold; the kept model measures what its last accepted row says;
    the input model is untouched; stricter thresholds never replace more layers (seed 0, 2 steps a layer)."""
    base = tiny_bert(layers=4, head=False)
    snapshot = {k: v.clone() for k, v in base.state_dict().items()}
    counts = []
    for threshold in (-1.0, 0.995, 0.999, 1.0):
        result = _select(base, token_data, threshold)
        assert [row["layer"] for row in result.log] == [3, 2, 1]
        assert all(row["accepted"] == (row["similarity"] >= threshold) for row in result.log)
        assert all(row["similarity"] >= threshold for row in result.log if row["accepted"])
        assert all(row["min_similarity"] <= row["similarity"] <= 1.0 + 1e-6 for row in result.log)
        assert result.layers == [row["layer"] for row in result.log if row["accepted"]]
        if result.layers:
            last = [row for row in result.log if row["accepted"]][-1]
            assert result.budget.measure(result.model)["similarity"] == pytest.approx(last["similarity"], abs=1e-6)
        counts.append(len(result.layers))
    assert counts == sorted(counts, reverse=True) and counts[0] == 3 and counts[-1] == 0
    assert all(torch.equal(v, snapshot[k]) for k, v in base.state_dict().items())


def test_bare_bert_six_layers_through_the_recipe(token_data):
    """The CLI's path (`recipe.compress` + `budget_summary`) on a 6-layer BertModel from a config: the fraction
    replaced and the similarities are reported, and the kept model's embeddings are what was measured."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)).eval()
    val = token_data(8, seed=1)
    selection, log = compress(model, token_data(8), val, budget=0.02, rank=None, mode="full", train_config=KD,
                              eval_batch_size=8, min_similarity=0.98)
    facts = budget_summary(selection, 6)
    assert facts["budget_metric"] == "similarity" and facts["num_layers"] == 6
    assert facts["fraction_layers_replaced"] == len(selection.layers) / 6 > 0
    assert facts["similarity"] >= 0.98 and facts["worst_sequence_similarity"] <= facts["similarity"]
    assert "ppl_increase" not in log[0] and selection.base_ppl != selection.base_ppl  # NaN: no perplexity
    batches = make_batches(val, 8, 0)
    kept = torch.cat([mean_pool(h, m) for (_, m), h in zip(batches, hidden_states(selection.model, batches))])
    ref = torch.cat([mean_pool(h, m) for (_, m), h in zip(batches, hidden_states(model, batches))])
    assert float(torch.cosine_similarity(kept, ref, dim=-1).mean()) == pytest.approx(facts["similarity"], abs=1e-6)


def test_lm_loss_on_a_bare_bert_is_refused_before_training(tiny_bert, token_data):
    cfg = LisaTrainConfig(max_steps=1, lm_weight=1.0, progress=False)
    with pytest.raises(ValueError, match="no LM head.*lm_weight=0"):
        select_layers(tiny_bert(head=False), token_data(4), token_data(4, seed=1), train_config=cfg)
