"""Reward-model evaluation: hand-computed metric cases, fake scorers/choosers, plots written."""

import math
import random

import numpy as np
import pytest
import torch

from pipelines.data.world import DEFAULT_ERROR_WEIGHTS, gold_reward, make_task, sample_response
from pipelines.evaluation.reward_eval import (
    PairScorer, best_of_n_curve, evaluate_pairs, plot_best_of_n, plot_reliability, score_pairs,
)
from pipelines.evaluation.reward_metrics import (
    best_of_n_kl, expected_calibration_error, gold_order_accuracy, pairwise_accuracy, position_bias_rate,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- pure metrics -------------------------------------------------------------------------------

def test_pairwise_accuracy_perfect_and_ties():
    assert pairwise_accuracy([0.9, 0.51, 1.0]) == 1.0
    assert pairwise_accuracy(np.array([0.9, 0.1, 0.5, 0.5])) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert pairwise_accuracy(torch.tensor([0.2, 0.8])) == 0.5


def test_gold_order_accuracy_excludes_ties():
    p = [0.9, 0.9, 0.2, 0.7, 0.5]
    gc = [1.0, 0.3, 0.0, 0.5, 2.0]
    gr = [0.0, 0.3, 1.0, 0.9, 1.0]  # pair 1 is a gold tie; pair 3 is a gold inversion the model gets wrong
    acc, n_used = gold_order_accuracy(p, gc, gr)
    assert n_used == 4
    assert acc == pytest.approx((1 + 1 + 0 + 0.5) / 4)


def test_gold_order_accuracy_all_ties_is_nan():
    acc, n_used = gold_order_accuracy([0.8, 0.3], [1.0, 0.5], [1.0, 0.5])
    assert n_used == 0 and math.isnan(acc)


def test_position_bias_of_always_prefers_a_judge_is_one():
    n = 7
    assert position_bias_rate(np.ones(n), np.zeros(n)) == 1.0
    assert position_bias_rate([0.8, 0.3, 0.9], [0.7, 0.6, 0.4]) == pytest.approx(2 / 3)
    assert position_bias_rate([0.8, 0.2], [0.8, 0.2]) == 0.0


def test_ece_of_calibrated_synthetic_set_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    outcome = (rng.uniform(0, 1, p.size) < p).astype(float)
    ece, table = expected_calibration_error(p, outcome)
    assert ece < 0.02
    assert len(table) == 10 and sum(r["count"] for r in table) == p.size
    assert table[0]["bin_low"] == 0.5 and table[-1]["bin_high"] == 1.0


def test_ece_of_constant_overconfident_predictor():
    p = np.full(100, 0.9)
    outcome = np.array([1.0, 0.0] * 50)
    ece, table = expected_calibration_error(p, outcome, n_bins=5)
    assert ece == pytest.approx(0.4)
    filled = [r for r in table if r["count"]]
    assert len(filled) == 1 and filled[0]["accuracy"] == 0.5
    assert math.isnan(table[0]["accuracy"]) and table[0]["count"] == 0


def test_ece_is_symmetric_in_the_side_shown_first():
    p = np.array([0.8, 0.3, 0.95, 0.6])
    outcome = np.array([1.0, 0.0, 0.0, 1.0])
    assert expected_calibration_error(p, outcome)[0] == pytest.approx(
        expected_calibration_error(1 - p, 1 - outcome)[0])


def test_kl_bound_values():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    with pytest.raises(ValueError):
        best_of_n_kl(0)


@pytest.mark.parametrize("call", [
    lambda: pairwise_accuracy([]),
    lambda: gold_order_accuracy([], [], []),
    lambda: position_bias_rate([], []),
    lambda: expected_calibration_error([], []),
])
def test_empty_inputs_raise(call):
    with pytest.raises(ValueError, match="empty"):
        call()


def test_mismatched_lengths_and_bad_outcomes_raise():
    with pytest.raises(ValueError, match="length"):
        position_bias_rate([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="0 or 1"):
        expected_calibration_error([0.6], [0.5])


# --- evaluate_pairs -----------------------------------------------------------------------------

class LongerIsBetter:
    """A discriminative fake: prefers the longer response; both orders agree."""

    def prob_first_better(self, prompts, ys1, ys2):
        p = torch.tensor([0.82 if len(a) > len(b) else 0.18 if len(a) < len(b) else 0.5 for a, b in zip(ys1, ys2)])
        return {"p": p, "p_order1": p.clone(), "p_order2": p.clone()}


class AlwaysPrefersA:
    """A maximally position-biased judge: whatever is shown first wins."""

    def prob_first_better(self, prompts, ys1, ys2):
        n = len(prompts)
        return {"p": np.full(n, 0.5), "p_order1": np.ones(n), "p_order2": np.zeros(n)}


def _world_records():
    # chosen longer in 3 of 4 sim records; record s3 is a gold tie
    return [
        {"id": "s0", "family": "arithmetic", "prompt": "q0", "chosen": "long answer", "rejected": "short",
         "gold_chosen": 1.0, "gold_rejected": 0.0, "label_agrees_with_gold": True},
        {"id": "s1", "family": "arithmetic", "prompt": "q1", "chosen": "tiny", "rejected": "much longer text",
         "gold_chosen": 0.2, "gold_rejected": 0.9, "label_agrees_with_gold": False},
        {"id": "s2", "family": "summary", "prompt": "q2", "chosen": "a longer one", "rejected": "b",
         "gold_chosen": 0.7, "gold_rejected": 0.1, "label_agrees_with_gold": True},
        {"id": "s3", "family": "summary", "prompt": "q3", "chosen": "tied but long", "rejected": "tied",
         "gold_chosen": 0.5, "gold_rejected": 0.5, "label_agrees_with_gold": None},
    ]


def _real_records():
    # chosen shorter, equally long (tie -> half credit), longer
    return [{"id": f"r{i}", "prompt": f"p{i}", "chosen": "x" * c, "rejected": "y" * r, "source": "hh"}
            for i, (c, r) in enumerate([(2, 3), (3, 3), (4, 1)])]


def test_fake_scorer_satisfies_protocol():
    assert isinstance(LongerIsBetter(), PairScorer)


def test_evaluate_pairs_on_simulated_records():
    metrics, details = evaluate_pairs(LongerIsBetter(), _world_records(), "test_id", seed=0, n_bootstrap=200,
                                      batch_size=3)
    assert metrics["test_id/n"] == 4
    assert metrics["test_id/acc_label"] == pytest.approx(0.75)
    assert metrics["test_id/acc_label_ci95_low"] <= 0.75 <= metrics["test_id/acc_label_ci95_high"]
    # gold: s0 right, s1 (longer rejected is gold-better; model prefers it) right, s2 right, s3 excluded
    assert metrics["test_id/n_gold"] == 3
    assert metrics["test_id/acc_gold"] == pytest.approx(1.0)
    assert metrics["test_id/position_bias"] == 0.0
    # confidence 0.82 everywhere (one bin), label accuracy 0.75
    assert metrics["test_id/ece"] == pytest.approx(0.07, abs=1e-6)
    assert metrics["test_id/family/arithmetic/acc_label"] == pytest.approx(0.5)
    assert metrics["test_id/family/summary/acc_label"] == pytest.approx(1.0)
    assert metrics["test_id/family/summary/n"] == 2
    assert metrics["test_id/family/summary/acc_gold"] == pytest.approx(1.0)
    np.testing.assert_allclose(details.p, [0.82, 0.18, 0.82, 0.82], rtol=1e-6)
    assert details.ids == ["s0", "s1", "s2", "s3"]
    assert sum(r["count"] for r in details.label_bins) == 4


def test_evaluate_pairs_on_real_records_has_no_gold_or_family_keys():
    metrics, details = evaluate_pairs(LongerIsBetter(), _real_records(), "hh", n_bootstrap=50)
    assert metrics["hh/n"] == 3
    assert metrics["hh/acc_label"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert not any("gold" in k or "/family/" in k for k in metrics)
    assert details.gold_chosen is None and details.gold_bins is None


def test_evaluate_pairs_is_deterministic_and_reports_position_bias():
    records = _world_records() + _real_records()
    first, _ = evaluate_pairs(AlwaysPrefersA(), records, "mix", seed=3, n_bootstrap=100)
    second, _ = evaluate_pairs(AlwaysPrefersA(), records, "mix", seed=3, n_bootstrap=100)
    assert first == second
    assert first["mix/position_bias"] == 1.0
    assert first["mix/acc_label"] == 0.5


def test_evaluate_pairs_rejects_empty_and_bad_scorer_output():
    with pytest.raises(ValueError, match="no records"):
        evaluate_pairs(LongerIsBetter(), [], "empty")

    class Short:
        def prob_first_better(self, prompts, ys1, ys2):
            return {"p": np.full(len(prompts) - 1, 0.6)}

    with pytest.raises(ValueError, match="batch"):
        score_pairs(Short(), _world_records())


# --- best of n ----------------------------------------------------------------------------------

def _bon_world(n_prompts=12, n_samples=8, seed=0):
    rng = random.Random(seed)
    families = ["arithmetic", "list_ops", "summary", "refuse"]
    prompts, samples = [], []
    for i in range(n_prompts):
        task = make_task(families[i % len(families)], rng)
        prompts.append({"prompt": task.prompt, "spec": task.spec})
        samples.append([sample_response(task, DEFAULT_ERROR_WEIGHTS, (0.5, 0.5), 0.1, rng).text
                        for _ in range(n_samples)])
    return prompts, samples


def test_best_of_n_gold_chooser_equals_oracle_and_is_monotone():
    prompts, samples = _bon_world()
    spec_of = {p["prompt"]: p["spec"] for p in prompts}

    def gold_chooser(texts, candidate_lists):
        return [int(np.argmax([gold_reward(spec_of[t], c) for c in cands])) for t, cands in zip(texts, candidate_lists)]

    rows = best_of_n_curve(gold_chooser, prompts, samples, ns=(1, 2, 4, 8), seed=0, n_bootstrap=200)
    assert [r["n"] for r in rows] == [1, 2, 4, 8]
    for r in rows:
        assert r["gold_mean"] == pytest.approx(r["oracle_gold_mean"])
        assert r["gold_ci_low"] <= r["gold_mean"] <= r["gold_ci_high"]
        assert r["kl_bound"] == pytest.approx(math.log(r["n"]) - (r["n"] - 1) / r["n"])
    means = [r["gold_mean"] for r in rows]
    assert all(b >= a - 1e-12 for a, b in zip(means, means[1:]))
    assert rows[0]["gold_mean"] == pytest.approx(rows[0]["first_sample_gold_mean"])
    assert len({r["first_sample_gold_mean"] for r in rows}) == 1


def test_best_of_n_first_pick_chooser_matches_baseline():
    prompts, samples = _bon_world(n_prompts=5, n_samples=4)
    rows = best_of_n_curve(lambda t, c: [0] * len(t), prompts, samples, ns=(1, 4), n_bootstrap=20)
    assert all(r["gold_mean"] == pytest.approx(r["first_sample_gold_mean"]) for r in rows)
    assert rows[1]["oracle_gold_mean"] >= rows[1]["gold_mean"]


def test_best_of_n_input_errors():
    prompts, samples = _bon_world(n_prompts=3, n_samples=4)
    with pytest.raises(ValueError, match="no prompts"):
        best_of_n_curve(lambda t, c: [0] * len(t), [], [])
    with pytest.raises(ValueError, match="fewer than max"):
        best_of_n_curve(lambda t, c: [0] * len(t), prompts, samples, ns=(1, 8))
    with pytest.raises(ValueError, match="outside"):
        best_of_n_curve(lambda t, c: [5] * len(t), prompts, samples, ns=(2,))


# --- plots --------------------------------------------------------------------------------------

def test_plots_are_written_as_png(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 500)
    _, table = expected_calibration_error(p, (rng.uniform(0, 1, 500) < p).astype(float))
    plot_reliability(table, tmp_path / "rel" / "reliability.png", "fake model")
    prompts, samples = _bon_world(n_prompts=4, n_samples=4)
    curves = {"first": best_of_n_curve(lambda t, c: [0] * len(t), prompts, samples, ns=(1, 2, 4), n_bootstrap=20),
              "last": best_of_n_curve(lambda t, c: [len(x) - 1 for x in c], prompts, samples, ns=(1, 2, 4),
                                      n_bootstrap=20)}
    plot_best_of_n(curves, tmp_path / "bon.png")
    for name in ("rel/reliability.png", "bon.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_a_registry_scorer_returning_p_alone_is_accepted():
    """Fails if the harness refused registry scorers, whose prob_first_better gives a tensor of p only."""
    import torch

    class POnly:
        def prob_first_better(self, prompts, ys1, ys2):
            return torch.tensor([0.8 if len(a) > len(b) else 0.3 for a, b in zip(ys1, ys2)])

    records = [{"prompt": "q", "chosen": "long answer", "rejected": "no"},
               {"prompt": "q", "chosen": "x", "rejected": "longer"}]
    p, p1, p2 = score_pairs(POnly(), records)
    assert p.tolist() == pytest.approx([0.8, 0.3]) and (p1 == p).all() and (p2 == p).all()


def test_best_of_n_curve_from_picks_matches_choosing_again():
    """Fails if the curve computed from stored picks differed from the one computed by choosing."""
    from pipelines.evaluation.reward_eval import best_of_n_curve_from_picks

    prompts = [{"prompt": f"p{i}", "spec": {}} for i in range(3)]
    samples = [["a", "bb", "ccc", "d"], ["eeee", "f", "gg", "h"], ["i", "j", "kk", "lll"]]
    gold = lambda spec, s: float(len(s))
    longest = lambda ts, cs: [max(range(len(c)), key=lambda i: len(c[i])) for c in cs]
    chosen = best_of_n_curve(longest, prompts, samples, ns=(1, 2, 4), n_bootstrap=20, gold_fn=gold)
    picks = {1: [0, 0, 0], 2: longest(None, [s[:2] for s in samples]), 4: longest(None, samples)}
    assert best_of_n_curve_from_picks(picks, prompts, samples, n_bootstrap=20, gold_fn=gold) == chosen
