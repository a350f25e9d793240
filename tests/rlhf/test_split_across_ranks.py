"""Work split across ranks and gathered back equals the unsplit computation (2 gloo ranks, spawned).

One spawn runs every case, so the process-group start is paid once. Slow: it starts a process group.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.evaluation.sampling import generate_responses
from pipelines.models.causal_lm import load_causal_lm, save_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.rlhf.batch_stats import global_masked_whiten, global_normalizer, masked_whiten, mean_over_ranks
from pipelines.rlhf.heldout import sample_policy
from pipelines.rlhf.rewards import RewardNormalizer
from pipelines.speech.evaluation import decode
from pipelines.training.distributed import ranks, shard
from tests.rlhf.ranks_harness import run_ranks

pytestmark = pytest.mark.slow

PROMPTS = ["the cat sees a red box", "a dog", "my friend reads the old book today at night", "the robot",
           "a small green tree", "the old man walks", "we read"]
EVAL_PROMPTS = [{"id": str(i), "family": "f", "prompt": p, "spec": {}} for i, p in enumerate(PROMPTS[:5])]


def _length_gold(spec, text: str) -> float:
    return float(len(text))


def _fake_decoder(feats: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Deterministic ids per utterance from its features: which utterance lands where is visible."""
    return [[int(lengths[i]), int(feats[i, 0, 0] * 1000)] for i in range(feats.shape[0])]


def _speech_features() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(3, 20, size=11)]


def _advantages() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, generator=gen)
    mask = (torch.rand(8, 5, generator=gen) > 0.3).float()
    return x, mask


def _all_cases(model_dir: str) -> dict:
    """Every split computation, run on each rank with its shard where the caller shards."""
    model, tok = load_causal_lm(model_dir), load_tokenizer(model_dir)
    out = {"generate": generate_responses(model, tok, PROMPTS, max_new_tokens=6, temperature=1.0, seed=3,
                                          batch_size=2, progress=False)}
    out["policy_rows"] = sample_policy(model, model, tok, EVAL_PROMPTS, 2, 5, temperature=1.0, seed=4, batch_size=3,
                                       progress=False, gold_fn=_length_gold)
    out["decode"] = decode(_fake_decoder, _speech_features(), batch_size=3)
    x, mask = _advantages()
    start, end = ranks().rank * 4, ranks().rank * 4 + 4
    out["whiten"] = global_masked_whiten(x[start:end], mask[start:end])
    raw = torch.arange(8, dtype=torch.float32) ** 1.5
    norm = global_normalizer(torch.tensor(shard(raw.tolist())), True)
    out["normalizer"] = (norm.mean, norm.std)
    out["means"] = mean_over_ranks({"step": 1, "kl": float(ranks().rank + 1)}, ["kl"])
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    from pipelines.models.causal_lm import build_llama
    from tests.models.conftest import TINY_MODEL

    folder = tmp_path_factory.mktemp("policy")
    save_causal_lm(build_llama(dict(TINY_MODEL), tokenizer, seed=0).eval(), tokenizer, str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def two_ranks(model_dir, tmp_path_factory):
    return run_ranks(_all_cases, (model_dir,), tmp_path_factory.mktemp("ranks"))


@pytest.fixture(scope="module")
def one_process(model_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks run one thread each; same kernels, same bits
    try:
        model, tok = load_causal_lm(model_dir), load_tokenizer(model_dir)
        return {"generate": generate_responses(model, tok, PROMPTS, max_new_tokens=6, temperature=1.0, seed=3,
                                               batch_size=2, progress=False),
                "policy_rows": sample_policy(model, model, tok, EVAL_PROMPTS, 2, 5, temperature=1.0, seed=4,
                                             batch_size=3, progress=False, gold_fn=_length_gold)}
    finally:
        torch.set_num_threads(before)


def test_sampled_responses_do_not_depend_on_the_number_of_ranks(two_ranks, one_process):
    """Fails if ranks re-seed their batches, move batch boundaries, or gather out of prompt order."""
    for result in two_ranks:
        assert result["generate"] == one_process["generate"]


def test_held_out_policy_samples_do_not_depend_on_the_number_of_ranks(two_ranks, one_process):
    """Fails if sample_policy's per-batch seeds or its gathered row order change under two ranks."""
    for result in two_ranks:
        got, want = result["policy_rows"], one_process["policy_rows"]
        assert [(r["prompt_index"], r["response"], r["gold"]) for r in got] == \
            [(r["prompt_index"], r["response"], r["gold"]) for r in want]
        assert [r["kl"] for r in got] == pytest.approx([r["kl"] for r in want], abs=1e-5)


def test_speech_decoding_gathers_every_utterance_in_input_order(two_ranks):
    """Fails if a rank's length batches are lost, decoded twice or put back at the wrong utterance."""
    want = decode(_fake_decoder, _speech_features(), batch_size=3)
    for result in two_ranks:
        assert result["decode"] == want


def test_advantage_whitening_and_reward_normaliser_use_the_global_batch(two_ranks):
    """Fails if whitening or the normaliser used only a rank's shard (their statistics would differ per rank)."""
    x, mask = _advantages()
    joined = torch.cat([two_ranks[0]["whiten"], two_ranks[1]["whiten"]])
    assert torch.allclose(joined, masked_whiten(x, mask), atol=1e-5)
    want = RewardNormalizer.fit(torch.arange(8, dtype=torch.float32) ** 1.5)
    for result in two_ranks:
        assert result["normalizer"] == pytest.approx((want.mean, want.std), rel=1e-6)
        assert result["means"] == {"step": 1, "kl": 1.5}


def _short_answers(prompts, texts) -> torch.Tensor:
    return -torch.tensor([float(len(t.split())) for t in texts])


def _ppo_on_ranks(model_dir: str) -> dict:
    """A short PPO run; what each rank ends with."""
    from pipelines.rlhf.ppo import PPOConfig, PolicyWithValue, optimizer_config, train_ppo

    tok = load_tokenizer(model_dir)
    policy, ref = PolicyWithValue(load_causal_lm(model_dir)), load_causal_lm(model_dir)
    if ranks().rank == 1:  # a rank that starts elsewhere must still end where rank 0 does (broadcast at start)
        with torch.no_grad():
            policy.value_head.bias.fill_(3.0)
    cfg = PPOConfig(max_steps=3, batch_size=8, minibatch_size=4, ppo_epochs=2, max_new_tokens=6, kl_coef=0.01,
                    eval_every=0, seed=1)
    result = train_ppo(policy, ref, tok, PROMPTS * 2, _short_answers, cfg,
                       optimizer_config({"lr": 1e-2, "warmup_steps": 0}, cfg), progress=False)
    return {"weights": {k: v.clone() for k, v in policy.state_dict().items()}, "history": result.history,
            "samples": result.samples, "tokens": result.generated_tokens,
            "normalizer": (result.normalizer.mean, result.normalizer.std)}


def test_ppo_on_two_ranks_keeps_one_policy_and_one_history(model_dir, tmp_path):
    """Fails if PPO gradients are not averaged over ranks (weights drift apart), if the ranks step a
    different number of times, or if logged statistics and counts are per-rank instead of global."""
    first, second = run_ranks(_ppo_on_ranks, (model_dir,), tmp_path)
    assert first["weights"].keys() == second["weights"].keys()
    for key, value in first["weights"].items():
        assert torch.equal(value, second["weights"][key]), key
    assert first["history"] == second["history"] and len(first["history"]) == 3
    assert first["samples"] == second["samples"] == 24
    assert first["tokens"] == second["tokens"] and first["normalizer"] == second["normalizer"]
    start = load_causal_lm(model_dir).state_dict()
    moved = [k for k, v in start.items() if not torch.equal(v, first["weights"][f"lm.{k}"])]
    assert moved, "PPO did not update the policy"
