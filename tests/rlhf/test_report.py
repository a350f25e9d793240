"""The policy comparison report reads its best-of-n choosers in the order the best_of_n stage ran them."""
from pipelines.rlhf.report import compare_policies, flat_curve, policy_table

TITLES = {"gram": ("GRAM", "knockout"), "bt": ("BT", "argmax")}


def _policy(gold: float, **extra) -> dict:
    return {"gold": gold, "gold_gain_vs_sft": 0.1, "gold_gain_vs_sft_ci95_low": 0.0,
            "gold_gain_vs_sft_ci95_high": 0.2, "win_rate_vs_sft": 0.5,
            "proxy/gram": 0.5, "proxy/bt": 1.0, "kl": 0.3, "sqrt_kl": 0.55, "sft_gold": 0.2, **extra}


def test_choosers_follow_the_curve_columns_not_the_sorted_metrics():
    """Fails if the choosers were read from metrics.json keys (sorted on disk: bt before gram), which
    reorders the table and the figure's series."""
    bon_metrics = {f"{rm}/n{n}/{k}": v for rm in ("bt", "gram") for n in (1, 4)
                   for k, v in _policy(0.3 if rm == "gram" else 0.25).items()}
    curve = [{"n": float(n), "kl": 0.0, "sqrt_kl": 0.1 * n, "gram_gold": 0.3, "gram_gold_ci95_low": 0.2,
              "gram_gold_ci95_high": 0.4, "gram_proxy": 0.5 + n, "bt_gold": 0.25, "bt_gold_ci95_low": 0.2,
              "bt_gold_ci95_high": 0.3, "bt_proxy": 1.0 + n} for n in (1, 4)]
    ppo = {"ppo_gram": (_policy(0.4, reward_model="gram", reward_norm_std=2.0),
                        [{"step": 0.0, "gold": 0.2, "proxy": 0.5, "kl": 0.0, "sqrt_kl": 0.0}])}
    report = compare_policies(ppo, _policy(0.35), bon_metrics, curve, ["gram", "bt"], TITLES)
    assert list(report.policies) == ["PPO, GRAM reward", "DPO", "best-of-4, GRAM knockout", "best-of-4, BT argmax"]
    assert list(report.series) == ["PPO, GRAM reward", "best-of-n, GRAM", "best-of-n, BT", "DPO"]
    assert report.series["best-of-n, GRAM"][1]["proxy_gain"] == 1.5   # (4.5 - 1.5) / the GRAM PPO run's std
    assert report.series["best-of-n, BT"][1]["proxy_gain"] == 3.0      # no BT PPO run: std 1
    assert set(report.metrics) == {"sft_gold", "ppo_gram", "dpo", "best_of_4_gram", "best_of_4_bt",
                                   "ppo_gram_curve_peak"}
    table = policy_table(report.policies, ["gram", "bt"], TITLES)
    assert "| GRAM proxy | BT proxy | KL to SFT |" in table.splitlines()[0]
    assert [r["method"] for r in flat_curve(report.series)][-1] == "DPO"
