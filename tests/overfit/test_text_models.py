"""Sanity before tuning (issue 17): every trainable text model memorises a handful of examples.

Each test trains from a fresh random init on a few examples with no rule to find (random pairings
of corpus sentences, so only memorisation fits them) and asks for (near) perfect training accuracy.
A model family that cannot do this has a bug in its loss, readout, masking or optimiser wiring;
these run the same loss functions and training loop the stages run.
"""
from __future__ import annotations

import copy
import functools
import random

import torch

from pipelines.data.lm_data import collate_blocks, pack_corpus
from pipelines.models.causal_lm import build_llama, causal_lm_loss
from pipelines.models.reward import GenerativeRewardModel, collate_judge, gram_stage2_loss, preference_examples
from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_loss, collate_bt
from pipelines.rlhf.dpo import add_reference_logprobs, collate_dpo, dpo_examples, dpo_loss, sequence_logprobs
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train

N_PAIRS = 12


def random_pairs(corpus, n=N_PAIRS, seed=0):
    """Pairs whose preferred side is decided by a coin: nothing to generalise, only to remember."""
    rng = random.Random(seed)
    return [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in (rng.sample(corpus, 3) for _ in range(n))]


def pair_accuracy(model, records) -> float:
    r = model.prob_first_better([x["prompt"] for x in records], [x["chosen"] for x in records],
                                [x["rejected"] for x in records])
    return float((r["p"] > 0.5).float().mean())


def test_causal_lm_memorises_sixteen_sentences(tokenizer, corpus, tiny_cfg):
    texts = corpus[:16]
    model = build_llama(tiny_cfg, tokenizer, seed=0)
    blocks = pack_corpus(texts, tokenizer, 32)
    cfg = TrainConfig(lr=1e-2, max_steps=150, batch_size=len(blocks), warmup_steps=5, log_every=50)
    train(model, blocks, causal_lm_loss, cfg, progress=False, collate_fn=collate_blocks)
    model.eval()
    batch = collate_blocks(blocks)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    predicted = logits[:, :-1].argmax(-1)
    target = batch["input_ids"][:, 1:]
    accuracy = float((predicted == target).float().mean())
    assert accuracy > 0.9, accuracy  # next-token accuracy on the training blocks


def test_bt_reward_model_memorises_random_pairs(tokenizer, corpus, tiny_cfg):
    records = random_pairs(corpus)
    model = BTRewardModel(build_llama(tiny_cfg, tokenizer, seed=0), tokenizer, 96, seed=0)
    data = bt_examples(records, tokenizer, 96)
    cfg = TrainConfig(lr=3e-3, max_steps=60, batch_size=N_PAIRS, warmup_steps=3, log_every=20)
    train(model, data, bt_loss, cfg, progress=False, collate_fn=functools.partial(collate_bt, pad_id=tokenizer.pad_token_id))
    assert pair_accuracy(model.eval(), records) == 1.0


def test_gram_memorises_random_pairs_in_both_orders(tokenizer, corpus, tiny_cfg):
    """Both placements of each pair: with one random placement per pair a judge can fit 12 pairs from the
    prompt alone (train loss 0.003), and the swap-averaged readout then gives exactly 0.5 for every pair."""
    records = random_pairs(corpus)
    model = GenerativeRewardModel(build_llama(tiny_cfg, tokenizer, seed=0), tokenizer, 128)
    data = preference_examples(records, tokenizer, 128, seed=0, both_orders=True)
    cfg = TrainConfig(lr=3e-3, max_steps=80, batch_size=len(data), warmup_steps=3, log_every=20)
    train(model, data, functools.partial(gram_stage2_loss, eps=0.0), cfg, progress=False,
          collate_fn=functools.partial(collate_judge, pad_id=tokenizer.pad_token_id))
    assert pair_accuracy(model.eval(), records) == 1.0  # the swap-averaged readout: both orders learned


def test_dpo_policy_memorises_its_preferences(tokenizer, corpus, tiny_cfg):
    records = random_pairs(corpus)
    policy = build_llama(tiny_cfg, tokenizer, seed=0)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    examples = dpo_examples(records, tokenizer, 64)
    add_reference_logprobs(reference, examples, tokenizer.pad_token_id, batch_size=N_PAIRS)
    cfg = TrainConfig(lr=3e-3, max_steps=60, batch_size=N_PAIRS, warmup_steps=3, log_every=20)
    train(policy, examples, functools.partial(dpo_loss, beta=0.1), cfg, progress=False,
          collate_fn=functools.partial(collate_dpo, pad_id=tokenizer.pad_token_id))
    batch = collate_dpo(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        logp = sequence_logprobs(policy.eval(), batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    implicit = logp - batch["ref_logp"]
    assert bool((implicit[:N_PAIRS] > implicit[N_PAIRS:]).all())  # every pair's chosen side now wins
