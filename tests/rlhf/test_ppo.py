import math

import pytest
import torch

from pipelines.rlhf.batch_stats import masked_whiten
from pipelines.rlhf.ppo import (PPOConfig, PolicyWithValue, gae, kl_penalised_rewards, ppo_losses,
                                optimizer_config, train_ppo)
from pipelines.rlhf.rewards import RewardNormalizer
from pipelines.rlhf.rollout import forward_logprobs, sample_rollout
from pipelines.models.causal_lm import build_llama
from tests.models.conftest import TINY_MODEL


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 0.5, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    values = torch.tensor([[0.2, 0.1, 0.4, 9.0], [1.0, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    expected = torch.tensor([[3.5 - 0.2, 2.5 - 0.1, 2.0 - 0.4, 0], [3.0 - 1.0, 3.0 - 0.5, 0, 0]])
    assert torch.allclose(adv, expected)
    assert torch.allclose(ret * mask, torch.tensor([[3.5, 2.5, 2.0, 0], [3.0, 3.0, 0, 0]]))


def test_gae_with_lambda_zero_is_one_step_td():
    rewards, values = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.25]])
    adv, _ = gae(rewards, values, torch.ones(1, 2), 1.0, 0.0)
    assert torch.allclose(adv, torch.tensor([[1.0 + 0.25 - 0.5, 2.0 - 0.25]]))


def test_score_lands_on_the_last_response_token_and_kl_everywhere():
    logp, ref = torch.tensor([[-1.0, -2.0, -1.0]]), torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    r = kl_penalised_rewards(torch.tensor([2.0]), logp, ref, mask, 0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.1 + 2.0, 0.0]]))


def test_ppo_policy_loss_at_ratio_one_and_clipping():
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    zero = torch.zeros(1, 2)
    pg, vf, stats = ppo_losses(zero, zero, zero, zero, adv, zero, mask, 0.2, 0.2)
    assert float(pg) == pytest.approx(0.0) and float(vf) == 0.0 and stats["clipfrac"] == 0.0
    # ratio e^1 with positive advantage is clipped at 1.2; with negative advantage the unclipped term wins.
    logp = torch.tensor([[1.0, 1.0]])
    pg, _, stats = ppo_losses(logp, zero, zero, zero, adv, zero, mask, 0.2, 0.2)
    assert float(pg) == pytest.approx((-1.2 + math.e) / 2, rel=1e-5)
    assert stats["clipfrac"] == 1.0


def test_whitened_advantages_ignore_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    w = masked_whiten(x, torch.tensor([[1.0, 1.0, 0.0]]))
    assert torch.allclose(w, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)


def test_value_head_starts_at_zero_and_logprobs_match_the_lm(policy_lm, tokenizer, prompts):
    policy = PolicyWithValue(policy_lm)
    r = sample_rollout(policy_lm, tokenizer, prompts, 6, 1.0, seed=2)
    logp, values = policy(r.input_ids, r.attention_mask, r.query_len)
    assert torch.allclose(logp * r.response_mask, forward_logprobs(policy_lm, r), atol=1e-6)
    assert torch.count_nonzero(values) == 0


def test_normalizer_standardises_initial_scores():
    n = RewardNormalizer.fit(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(n(torch.tensor([2.0, 3.0])), torch.tensor([0.0, 1.0]))
    assert RewardNormalizer.fit(torch.tensor([5.0, 5.0])).std == pytest.approx(1e-3)


def _run(tokenizer, prompts, steps=20, seed=0):
    torch.manual_seed(0)
    policy = PolicyWithValue(build_llama(dict(TINY_MODEL), tokenizer, seed=0))
    ref = build_llama(dict(TINY_MODEL), tokenizer, seed=0)
    short = lambda ps, texts: -torch.tensor([float(len(t.split())) for t in texts])  # prefer short answers
    cfg = PPOConfig(max_steps=steps, batch_size=16, minibatch_size=8, ppo_epochs=2, max_new_tokens=10, kl_coef=0.01,
                    eval_every=8, seed=seed)
    evals = []
    result = train_ppo(policy, ref, tokenizer, prompts * 4, short, cfg,
                       optimizer_config({"lr": 1e-2, "warmup_steps": 0}, cfg),
                       eval_fn=lambda step: evals.append(step) or {"marker": step}, progress=False)
    return result, evals


def test_ppo_learns_a_simple_reward_and_is_deterministic(tokenizer, prompts):
    result, evals = _run(tokenizer, prompts)
    train_rows = [r for r in result.history if "score_raw" in r]
    assert len(train_rows) == 20 and evals == [0, 8, 16, 20]
    first = sum(r["score_raw"] for r in train_rows[:3]) / 3
    last = sum(r["score_raw"] for r in train_rows[-3:]) / 3
    assert last > first + 0.4, (first, last)
    assert train_rows[-1]["kl"] > 0
    assert set(result.phase_seconds) == {"generate", "score", "reference", "update", "eval"}
    again, _ = _run(tokenizer, prompts)
    assert [r.get("score_raw") for r in again.history] == [r.get("score_raw") for r in result.history]


def test_ppo_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(batch_size=10, minibatch_size=4)
    with pytest.raises(ValueError, match="unknown PPO keys"):
        PPOConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="temperature"):
        PPOConfig(temperature=0)
