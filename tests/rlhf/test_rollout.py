import torch

from pipelines.rlhf.rollout import forward_logprobs, sample_rollout, sequence_kl


def test_greedy_tokens_are_argmax_of_recomputed_logits(policy_lm, tokenizer, prompts):
    r = sample_rollout(policy_lm, tokenizer, prompts, max_new_tokens=8, temperature=0.0)
    from pipelines.rlhf.rollout import position_ids
    logits = policy_lm(input_ids=r.input_ids, attention_mask=r.attention_mask,
                       position_ids=position_ids(r.attention_mask)).logits
    pred = logits[:, r.query_len - 1:-1].argmax(-1)
    mask = r.response_mask.bool()
    assert torch.equal(pred[mask], r.response_ids[mask])


def test_logprobs_do_not_depend_on_left_padding(policy_lm, tokenizer, prompts):
    batch = sample_rollout(policy_lm, tokenizer, prompts, max_new_tokens=6, temperature=1.0, seed=3)
    lp_batch = forward_logprobs(policy_lm, batch)
    # The shortest prompt ("a dog") is padded in the batch; score its sample alone.
    i = 1
    alone = sample_rollout(policy_lm, tokenizer, [prompts[i]], max_new_tokens=1, temperature=0.0)
    q = alone.query_len
    ids = torch.cat([alone.input_ids[:, :q], batch.response_ids[i:i + 1]], 1)
    from pipelines.rlhf.rollout import Rollout
    single = Rollout([prompts[i]], ids, torch.cat([alone.attention_mask[:, :q], batch.response_mask[i:i + 1].long()], 1),
                     batch.response_mask[i:i + 1], q, [batch.texts[i]])
    assert torch.allclose(forward_logprobs(policy_lm, single)[0], lp_batch[i], atol=1e-5)


def test_response_mask_stops_after_first_eos(policy_lm, tokenizer, prompts):
    r = sample_rollout(policy_lm, tokenizer, prompts * 4, max_new_tokens=12, temperature=1.5, seed=1)
    eos = tokenizer.eos_token_id
    for row, m in zip(r.response_ids.tolist(), r.response_mask.tolist()):
        n = int(sum(m))
        assert all(m[:n]) and not any(m[n:])
        assert eos not in row[:n - 1]
        if n < len(row):
            assert row[n - 1] == eos


def test_sampling_is_reproducible_and_kl_to_itself_is_zero(policy_lm, tokenizer, prompts):
    a = sample_rollout(policy_lm, tokenizer, prompts, 8, 1.0, seed=5)
    b = sample_rollout(policy_lm, tokenizer, prompts, 8, 1.0, seed=5)
    assert torch.equal(a.input_ids, b.input_ids) and a.texts == b.texts
    lp = forward_logprobs(policy_lm, a)
    assert torch.allclose(sequence_kl(lp, lp, a.response_mask), torch.zeros(len(prompts)))
