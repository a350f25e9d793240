import pytest

from pipelines.evaluation.policy_eval import summarize_policy
from pipelines.rlhf.heldout import sample_policy


def _rows(golds):
    return [{"prompt_index": i, "gold": g, "kl": 0.5 * i, "response": "a b", "family": f"f{i % 2}"}
            for i, gs in enumerate(golds) for g in gs]


def test_summary_pairs_each_prompt_with_its_sft_samples():
    rows = _rows([[1.0, 0.0], [0.5]])
    sft = [[0.0, 0.0, 1.0], [0.5, 0.0]]
    m = summarize_policy(rows, sft, n_bootstrap=200)
    assert m["gold"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["gold_gain_vs_sft"] == pytest.approx(((0.5 - 1 / 3) + (0.5 - 0.25)) / 2, abs=1e-4)
    # prompt 0: (1 vs 0,0,1) -> 2.5/3 ; (0 vs 0,0,1) -> 1/3 ; mean 7/12. prompt 1: 0.5 vs (0.5, 0) -> 0.75.
    assert m["win_rate_vs_sft"] == pytest.approx((7 / 12 + 0.75) / 2, abs=1e-4)
    assert m["kl"] == pytest.approx(0.25) and m["sqrt_kl"] == pytest.approx(0.5)
    assert m["family/f0/gold"] == 0.5 and m["family/f1/sft_gold"] == 0.25
    assert m["gold_ci95_low"] <= m["gold"] <= m["gold_ci95_high"]


def test_summary_uses_an_analytic_kl_and_checks_proxies():
    rows = _rows([[1.0], [0.0]])
    m = summarize_policy(rows, [[0.0], [0.0]], kl=1.25, proxies={"bt": [1.0, 3.0]})
    assert m["kl"] == 1.25 and m["proxy/bt"] == 2.0
    with pytest.raises(ValueError, match="proxy"):
        summarize_policy(rows, [[0.0], [0.0]], proxies={"bt": [1.0]})
    with pytest.raises(ValueError, match="no samples"):
        summarize_policy(rows, [[0.0], [0.0], [1.0]])


def test_sample_policy_against_itself_has_zero_kl(policy_lm, tokenizer):
    prompts = [{"prompt": "the cat", "spec": {}, "family": "x"}, {"prompt": "a dog", "spec": {}, "family": "y"}]
    rows = sample_policy(policy_lm, policy_lm, tokenizer, prompts, 3, 5, seed=1, batch_size=4, progress=False,
                         gold_fn=lambda spec, text: float(len(text)))
    assert len(rows) == 6 and [r["prompt_index"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert all(abs(r["kl"]) < 1e-5 for r in rows)
    assert all(r["gold"] == len(r["response"]) for r in rows)
