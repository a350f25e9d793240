import copy

import pytest
import torch

from pipelines.compression.lisa import apply_lisa
from pipelines.compression.objective import perplexity
from pipelines.compression.select import select_layers
from pipelines.compression.train import LisaTrainConfig, train_lisa


def test_training_reduces_lm_loss_and_leaves_base_frozen(tiny_llama, token_data):
    data = token_data(16)
    model = apply_lisa(tiny_llama(), [2, 3], mode="full")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".lisa_" not in n}
    before = perplexity(model, data)
    history = train_lisa(model, data, LisaTrainConfig(max_steps=30, batch_size=8, lr=3e-2, progress=False))
    after = perplexity(model, data)
    assert len(history["loss"]) == 30 and after < before
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_training_is_deterministic_for_a_seed(tiny_llama, token_data):
    data = token_data(12)
    cfg = LisaTrainConfig(max_steps=6, batch_size=4, lr=1e-2, seed=7, progress=False)
    first, second = (apply_lisa(tiny_llama(), [3], mode="full", seed=1) for _ in range(2))
    assert train_lisa(first, data, cfg) == train_lisa(second, data, cfg)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_attention_distillation_pulls_probabilities_to_teacher(tiny_llama, token_data):
    data = token_data(12)
    teacher = tiny_llama()
    model = apply_lisa(copy.deepcopy(teacher), [2, 3], mode="full")
    cfg = LisaTrainConfig(max_steps=25, batch_size=12, lr=3e-2, lm_weight=0.0, distill_weight=1.0, progress=False)
    history = train_lisa(model, data, cfg, teacher=teacher)
    assert history["distill"][-1] < history["distill"][0]
    mse = LisaTrainConfig(max_steps=2, lm_weight=1.0, distill_weight=0.5, distill_loss="mse", progress=False)
    assert len(train_lisa(model, data, mse, teacher=teacher)["loss"]) == 2
    with pytest.raises(ValueError, match="teacher"):
        train_lisa(model, data, LisaTrainConfig(distill_weight=1.0, progress=False))


def test_share_mode_has_nothing_to_train(tiny_llama, token_data):
    model = apply_lisa(tiny_llama(), [3], mode="share")
    assert train_lisa(model, token_data(4), LisaTrainConfig(max_steps=3, progress=False)) == \
        {"loss": [], "lm": [], "distill": []}


def test_bert_masked_lm_training(tiny_bert, token_data):
    data = token_data(12)
    model = apply_lisa(tiny_bert(), [1, 2], mode="full")
    cfg = LisaTrainConfig(max_steps=20, batch_size=12, lr=3e-2, mask_token_id=63, progress=False)
    before = perplexity(model, data, mask_token_id=63)
    train_lisa(model, data, cfg)
    assert perplexity(model, data, mask_token_id=63) < before
    with pytest.raises(ValueError, match="mask_token_id"):
        perplexity(model, data)
    bare_teacher = tiny_bert(head=False)
    bare = apply_lisa(copy.deepcopy(bare_teacher), [2])
    with pytest.raises(ValueError, match="LM head"):
        train_lisa(bare, data, LisaTrainConfig(max_steps=1, mask_token_id=63, progress=False))
    kd = LisaTrainConfig(max_steps=3, lm_weight=0.0, distill_weight=1.0, progress=False)
    assert len(train_lisa(bare, data, kd, teacher=bare_teacher)["distill"]) == 3


@pytest.mark.parametrize("budget, expected", [(1e6, [3, 2, 1]), (-0.5, [])])
def test_greedy_selection_accepts_and_rejects(tiny_llama, token_data, budget, expected):
    base = tiny_llama()
    snapshot = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = LisaTrainConfig(max_steps=2, batch_size=8, lr=1e-2, progress=False)
    result = select_layers(base, token_data(8), token_data(8, seed=1), budget=budget, train_config=cfg)
    assert result.layers == expected
    assert [row["layer"] for row in result.log] == [3, 2, 1]  # deepest first, never layer 0
    assert all(row["accepted"] == (row["ppl"] <= row["threshold"]) for row in result.log)
    assert all(row["threshold"] == pytest.approx((1 + budget) * result.base_ppl) for row in result.log)
    assert getattr(result.model, "lisa_state", None) is None if not expected else \
        result.model.lisa_state.layers == sorted(expected)
    assert base.state_dict().keys() == snapshot.keys()  # the input model is untouched
    assert all(torch.equal(v, snapshot[k]) for k, v in base.state_dict().items())
