import math
from functools import partial

import pytest
import torch

from pipelines.models.causal_lm import build_llama
from pipelines.rlhf.dpo import _fit, add_reference_logprobs, collate_dpo, dpo_examples, dpo_loss, sequence_logprobs
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from tests.models.conftest import TINY_MODEL

RECORDS = [{"prompt": "the cat sees a red box", "chosen": "a dog reads", "rejected": "the robot the robot paints"},
           {"prompt": "my friend", "chosen": "3 apples today.", "rejected": "the green tree!"}] * 4


def test_truncation_keeps_the_response_and_the_latest_prompt_tokens():
    q, r = _fit(list(range(10)), list(range(100, 120)), 16)
    assert q == list(range(2, 10)) and r == list(range(100, 108))
    q, r = _fit([1, 2], [7, 8], 16)
    assert (q, r) == ([1, 2], [7, 8])
    with pytest.raises(ValueError):
        _fit([1], [2], 3)


def test_response_mask_covers_exactly_the_response_and_eos(tokenizer):
    ex = dpo_examples(RECORDS[:1], tokenizer, 64)[0]
    b = collate_dpo([ex], tokenizer.pad_token_id)
    n_resp = len(tokenizer(" a dog reads", add_special_tokens=False)["input_ids"]) + 1
    assert int(b["response_mask"][0].sum()) == n_resp
    assert int(b["input_ids"][0, len(ex["chosen_ids"]) - 1]) == tokenizer.eos_token_id


def test_dpo_loss_is_log2_at_the_reference_and_falls_with_training(tokenizer):
    policy = build_llama(dict(TINY_MODEL), tokenizer, seed=0)
    ref = build_llama(dict(TINY_MODEL), tokenizer, seed=0)
    examples = dpo_examples(RECORDS, tokenizer, 64)
    add_reference_logprobs(ref, examples, tokenizer.pad_token_id, progress=False)
    batch = collate_dpo(examples, tokenizer.pad_token_id)
    loss, stats = dpo_loss(policy, batch, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-5) and stats["margin"] == pytest.approx(0, abs=1e-5)
    result = train(policy, examples, partial(dpo_loss, beta=0.1), TrainConfig(lr=3e-3, max_steps=15, batch_size=8),
                   collate_fn=partial(collate_dpo, pad_id=tokenizer.pad_token_id), progress=False)
    loss_after, stats = dpo_loss(policy, batch, beta=0.1)
    assert float(loss_after) < 0.5 and stats["acc"] == 1.0 and result.steps == 15


def test_dpo_loss_without_reference_is_an_error(tokenizer):
    batch = collate_dpo(dpo_examples(RECORDS[:2], tokenizer, 64), tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="reference"):
        dpo_loss(build_llama(dict(TINY_MODEL), tokenizer), batch, 0.1)


def test_sequence_logprobs_are_padding_invariant(tokenizer):
    model = build_llama(dict(TINY_MODEL), tokenizer, seed=1)
    exs = dpo_examples(RECORDS[:2], tokenizer, 64)
    both = collate_dpo(exs, tokenizer.pad_token_id)
    one = collate_dpo(exs[:1], tokenizer.pad_token_id)
    lp_both = sequence_logprobs(model, both["input_ids"], both["attention_mask"], both["response_mask"])
    lp_one = sequence_logprobs(model, one["input_ids"], one["attention_mask"], one["response_mask"])
    assert torch.allclose(lp_both[[0, 2]], lp_one, atol=1e-5)


def test_dpo_loss_matches_the_formula_by_hand_with_beta_03(tokenizer):
    """-log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))), averaged over pairs, with beta = 0.3.

    Log-probabilities are summed by hand from each unpadded sequence's logits, the policy and the
    reference differ (seeds 0 and 1), and the pairs' margins are far from zero: a flipped sign,
    beta applied twice or not at all, chosen and rejected rows swapped, or padding counted in the
    sums would each move the loss well outside the tolerance.
    """
    beta = 0.3
    policy = build_llama(dict(TINY_MODEL), tokenizer, seed=0)
    ref = build_llama(dict(TINY_MODEL), tokenizer, seed=1)
    # the second pair reversed so both margins share a sign: a flipped sign then moves the mean loss
    records = [RECORDS[0], {**RECORDS[1], "chosen": RECORDS[1]["rejected"], "rejected": RECORDS[1]["chosen"]}]
    examples = dpo_examples(records, tokenizer, 64)
    add_reference_logprobs(ref, examples, tokenizer.pad_token_id, progress=False)

    @torch.no_grad()
    def logp_by_hand(model, ids: torch.Tensor, start: int) -> float:
        logits = model(input_ids=ids[None]).logits[0].double()
        return sum(float(torch.log_softmax(logits[t - 1], -1)[ids[t]]) for t in range(start, len(ids)))

    terms, margins = [], []
    for ex in examples:
        chosen = logp_by_hand(policy, ex["chosen_ids"], ex["chosen_start"])
        rejected = logp_by_hand(policy, ex["rejected_ids"], ex["rejected_start"])
        assert ex["ref_chosen_logp"] == pytest.approx(logp_by_hand(ref, ex["chosen_ids"], ex["chosen_start"]), abs=1e-3)
        margin = beta * ((chosen - ex["ref_chosen_logp"]) - (rejected - ex["ref_rejected_logp"]))
        margins.append(margin)
        terms.append(math.log1p(math.exp(-margin)))  # -log sigmoid(m)
    expected = sum(terms) / len(terms)
    assert min(abs(m) for m in margins) > 0.05 and abs(sum(margins)) / len(margins) > 0.05  # not a trivial point
    loss, stats = dpo_loss(policy, collate_dpo(examples, tokenizer.pad_token_id), beta=beta)
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert stats["margin"] == pytest.approx(sum(margins) / len(margins), abs=1e-4)
    assert stats["acc"] == sum(m > 0 for m in margins) / len(margins)


def test_dpo_loss_formula_on_fixed_log_probabilities(monkeypatch):
    """The same formula on numbers a reader can check: margins 0.45 and -0.3 at beta = 0.3.

    Pair 1: (-3.0 - -3.5) - (-4.0 - -3.0) = 1.5; pair 2: (-5.5 - -5.0) - (-2.5 - -3.0) = -1.0.
    """
    import pipelines.rlhf.dpo as dpo

    monkeypatch.setattr(dpo, "sequence_logprobs", lambda *a: torch.tensor([-3.0, -5.5, -4.0, -2.5]))
    batch = {"input_ids": None, "attention_mask": None, "response_mask": None,
             "ref_logp": torch.tensor([-3.5, -5.0, -3.0, -3.0])}
    loss, stats = dpo.dpo_loss(None, batch, beta=0.3)
    expected = (math.log1p(math.exp(-0.45)) + math.log1p(math.exp(0.3))) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert stats["margin"] == pytest.approx((0.45 - 0.3) / 2, abs=1e-6) and stats["acc"] == 0.5
    assert stats["reward_chosen"] == pytest.approx(0.3 * (0.5 - 0.5) / 2, abs=1e-6)
    assert stats["reward_rejected"] == pytest.approx(0.3 * (-1.0 + 0.5) / 2, abs=1e-6)


def test_margin_weights_drop_predicted_flips_and_average_one():
    """Fails if a pair predicted to be mislabelled (margin <= 0) still counts, or the weights stop averaging 1."""
    from pipelines.rlhf.dpo import margin_weights

    assert margin_weights([0.5, -0.2, 1.5, 0.0]) == pytest.approx([1.0, 0.0, 3.0, 0.0])
    assert margin_weights([-1.0, -2.0]) == [1.0, 1.0]  # nothing to go by: plain DPO


def test_weighted_dpo_loss_by_hand(monkeypatch):
    """Same numbers as above with weights 2 and 0: only pair 1 counts, twice, over the batch of two."""
    import pipelines.rlhf.dpo as dpo

    monkeypatch.setattr(dpo, "sequence_logprobs", lambda *a: torch.tensor([-3.0, -5.5, -4.0, -2.5]))
    batch = {"input_ids": None, "attention_mask": None, "response_mask": None,
             "ref_logp": torch.tensor([-3.5, -5.0, -3.0, -3.0]), "weight": torch.tensor([2.0, 0.0])}
    loss, _ = dpo.dpo_loss(None, batch, beta=0.3)
    assert float(loss) == pytest.approx(2 * math.log1p(math.exp(-0.45)) / 2, abs=1e-6)
    batch["weight"] = torch.ones(2)
    assert float(dpo.dpo_loss(None, batch, beta=0.3)[0]) == pytest.approx(
        (math.log1p(math.exp(-0.45)) + math.log1p(math.exp(0.3))) / 2, abs=1e-6)


def test_collate_carries_weights_only_when_given(tokenizer):
    examples = dpo_examples(RECORDS[:2], tokenizer, 32)
    assert "weight" not in collate_dpo(examples, tokenizer.pad_token_id)
    for ex, w in zip(examples, (0.5, 1.5)):
        ex["weight"] = w
    assert collate_dpo(examples, tokenizer.pad_token_id)["weight"].tolist() == [0.5, 1.5]
