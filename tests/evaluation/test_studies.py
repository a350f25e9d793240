"""Study statistics from plain values: t-intervals over seeds, oriented differences, verdicts, report text."""
from __future__ import annotations

import math

from pipelines.evaluation.studies import Claim, claims_markdown, group_keys, judge_claims, summarise, t_interval, verdict

GRID = {"seed": [0, 1, 2], "size": [1000, 250]}


def _rows(diffs_by_size: dict) -> list[dict]:
    return [{"seed": seed, "size": size, "A|acc": 0.5 + d, "B|acc": 0.5}
            for size, diffs in diffs_by_size.items() for seed, d in enumerate(diffs)]


def test_t_interval_matches_the_textbook_formula():
    """Breaks if the interval used a normal quantile, the population stdev, or gave one seed an interval."""
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert math.isclose(high - mean, 4.302652729911275 * 1.0 / math.sqrt(3), rel_tol=1e-9)
    assert math.isclose(mean - low, high - mean)
    assert math.isnan(t_interval([5.0])[1]) and math.isnan(t_interval([5.0])[2])


def test_verdict_needs_the_whole_interval_on_one_side():
    """Breaks if a verdict were called from the mean alone (an interval straddling 0 is inconclusive)."""
    assert verdict(0.01, 0.2) == "reproduced"
    assert verdict(-0.2, -0.01) == "reversed"
    assert verdict(-0.01, 0.2) == "inconclusive"
    assert verdict(math.nan, math.nan) == "one seed: no interval"


def test_claims_are_judged_per_setting_with_lower_is_better_oriented():
    """Breaks if settings were pooled, sorted as strings (1000 before 250), or lower_is_better ignored."""
    rows = _rows({1000: [0.10, 0.11, 0.12], 250: [-0.10, -0.11, -0.12]})
    keys = group_keys(GRID, "seed")
    assert keys == ["size"]
    higher = judge_claims(rows, keys, [Claim("A wins", ("A", "acc"), ("B", "acc"))])
    assert [(c["size"], c["verdict"], c["n_seeds"]) for c in higher] == [(250, "reversed", 3), (1000, "reproduced", 3)]
    assert math.isclose(higher[1]["difference"], 0.11)
    lower = judge_claims(rows, keys, [Claim("A lower", ("A", "acc"), ("B", "acc"), lower_is_better=True)])
    assert [c["verdict"] for c in lower] == ["reproduced", "reversed"]


def test_summary_skips_missing_values_and_the_report_lists_every_row():
    """Breaks if a missing metric (a failed cell) counted as a seed or a summary row fell out of the report."""
    rows = _rows({1000: [0.1, 0.2, 0.3]})
    rows[0]["B|acc"] = None
    summary = summarise(rows, ["size"], ["A", "B"], ["acc"])
    assert [(s["model"], s["n_seeds"]) for s in summary] == [("A", 3), ("B", 2)]
    assert math.isclose(summary[0]["mean"], 0.7)
    claims = judge_claims(rows, ["size"], [Claim("A wins", ("A", "acc"), ("B", "acc"))])
    text = claims_markdown("toy", "A toy.", GRID, "seed", summary, claims)
    assert "| A wins | 1000 | 0.250 |" in text and "| A | acc | 1000 | 0.700 |" in text and "| B | acc | 1000 |" in text


def test_seeds_needed_matches_paired_t_test_power_tables():
    """Breaks if the power calculation used a normal approximation or forgot the noncentrality (d = 1 -> 10 pairs,
    d = 0.5 -> 34, the textbook values for 80% power at alpha 0.05, two-sided)."""
    from pipelines.evaluation.studies import seeds_needed

    assert seeds_needed(0.1, 0.1) == 10 and seeds_needed(0.1, 0.05) == 34
    assert seeds_needed(0.0, 0.1) == 2 and seeds_needed(math.nan, 0.1) is None
    assert seeds_needed(1.0, 0.001, most=50) is None  # would need more than `most`


def test_claims_with_an_effect_report_seeds_needed_in_the_table():
    rows = _rows({1000: [0.00, 0.10, 0.20], 250: [0.1, 0.1, 0.1]})
    judged = judge_claims(rows, ["size"], [Claim("A wins", ("A", "acc"), ("B", "acc"), effect=0.1)])
    by_size = {c["size"]: c for c in judged}
    assert math.isclose(by_size[1000]["sd"], 0.1) and by_size[1000]["seeds_needed"] == 10
    table = claims_markdown("s", "d", GRID, "seed", [], judged)
    assert "10 (effect 0.1, sd 0.100)" in table


def test_a_seed_only_grid_gives_well_formed_tables():
    """Breaks if a grid with no key but the seed left an empty column (7 header cells over 6 separators,
    which no markdown renderer draws as a table)."""
    rows = [{"cell": f"c{i}", "seed": i, "A|acc": 0.7 + i / 100, "B|acc": 0.6} for i in range(3)]
    claims = judge_claims(rows, [], [Claim("A wins", ("A", "acc"), ("B", "acc"))])
    summary = summarise(rows, [], ["A", "B"], ["acc"])
    text = claims_markdown("s", "d", {"seed": [0, 1, 2]}, "seed", summary, claims)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert "| A wins | 0.110 |" in text and "| claim | difference |" in text
    for header, sep in ((tables[0], tables[1]), (tables[3], tables[4])):
        assert header.count("|") == sep.count("|")
