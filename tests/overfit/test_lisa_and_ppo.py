"""Sanity before tuning (issue 17): LiSA layers and the PPO policy can fit what they are given.

LiSA: at full per-head rank the low-rank path can express any bilinear score, so on four random
sequences distillation must pull the replaced layers' attention onto the teacher's almost exactly
(at the default rank it plateaus near KL 0.09: that is capacity, which the layer budget measures).
PPO: against a fixed, dense reward (the share of "e" characters in the response) the policy must
reach (near) the maximum, which exercises rollout, advantages, clipping and the optimiser together.
"""
from __future__ import annotations

import copy

import torch

from pipelines.compression.lisa import apply_lisa
from pipelines.compression.train import LisaTrainConfig, train_lisa
from pipelines.data.template import format_prompt
from pipelines.models.causal_lm import build_llama
from pipelines.models.tokenizer import train_bpe_tokenizer
from pipelines.rlhf.ppo import PPOConfig, PolicyWithValue, optimizer_config, train_ppo
from tests.compression.conftest import _llama
from tests.models.conftest import TINY_MODEL, make_corpus


def test_lisa_layers_at_full_rank_reproduce_the_teachers_attention():
    gen = torch.Generator().manual_seed(0)
    data = [[1] + torch.randint(3, 64, (11,), generator=gen).tolist() for _ in range(4)]
    teacher = _llama()
    head_dim = teacher.config.hidden_size // teacher.config.num_attention_heads
    model = apply_lisa(copy.deepcopy(teacher), [2, 3], rank=head_dim, mode="full")
    cfg = LisaTrainConfig(max_steps=150, batch_size=4, lr=3e-2, lm_weight=0.0, distill_weight=1.0, progress=False)
    history = train_lisa(model, data, cfg, teacher=teacher)
    assert history["distill"][0] > 0.3  # the heads start far from the teacher's ...
    assert history["distill"][-1] < 0.01, history["distill"][-1]  # ... and end on it (KL per query row)


def test_ppo_policy_reaches_the_maximum_of_a_fixed_reward():
    tokenizer = train_bpe_tokenizer([format_prompt(t) + " " + t for t in make_corpus(400)], vocab_size=320,
                                    min_frequency=2, model_max_length=128)
    prompts = ["the cat sees a red box", "a dog", "my friend reads the old book today at night", "the robot"]
    torch.manual_seed(0)
    policy = PolicyWithValue(build_llama(dict(TINY_MODEL), tokenizer, seed=0))
    reference = build_llama(dict(TINY_MODEL), tokenizer, seed=0)

    def share_of_e(_prompts, texts):
        return torch.tensor([t.count("e") / max(1, len(t)) for t in texts])

    cfg = PPOConfig(max_steps=40, batch_size=16, minibatch_size=8, ppo_epochs=2, max_new_tokens=8, kl_coef=0.0, seed=0)
    result = train_ppo(policy, reference, tokenizer, prompts * 4, share_of_e, cfg,
                       optimizer_config({"lr": 1e-2, "warmup_steps": 0}, cfg), progress=False)
    scores = [row["score_raw"] for row in result.history if "score_raw" in row]
    assert sum(scores[:3]) / 3 < 0.2
    assert sum(scores[-3:]) / 3 > 0.95, scores
