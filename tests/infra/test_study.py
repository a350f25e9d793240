"""Study specs are checked, grids expand, and the spec-level wrappers hand the right values to the statistics
(pipelines/evaluation/studies.py, tested in tests/evaluation/test_studies.py)."""
from __future__ import annotations

import math

import pytest
import yaml

from alignflow.runtime.errors import ParamsError
from alignflow.study import cell_name, cells, judge_claims, load_spec, markdown, summarise

SPEC = {
    "name": "toy",
    "grid": {"reward_seed": [0, 1, 2], "prefs.limit": [10, 20]},
    "seed_key": "reward_seed",
    "models": {"A": "models/a/metrics.json", "B": "models/b/metrics.json"},
    "metrics": ["acc", "ece"],
    "claims": [{"name": "A beats B", "better": {"model": "A", "metric": "acc"},
                "worse": {"model": "B", "metric": "acc"}},
               {"name": "A calibrated", "better": {"model": "A", "metric": "ece"},
                "worse": {"model": "B", "metric": "ece"}, "lower_is_better": True}],
}


def _spec(tmp_path, **changes):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}, sort_keys=False))
    return load_spec(path)


def _rows(acc_a, acc_b, ece_a=0.1, ece_b=0.2):
    rows = []
    for limit, (a_values, b_values) in {10: (acc_a, acc_b), 20: (acc_b, acc_a)}.items():
        for seed, (a, b) in enumerate(zip(a_values, b_values)):
            rows.append({"cell": f"c{seed}{limit}", "reward_seed": seed, "prefs.limit": limit,
                         "A|acc": a, "B|acc": b, "A|ece": ece_a, "B|ece": ece_b + 0.01 * seed})
    return rows


def test_grid_cells_and_names(tmp_path):
    spec = _spec(tmp_path)
    grid = cells(spec)
    assert len(grid) == 6 and grid[0] == {"reward_seed": 0, "prefs.limit": 10}
    assert cell_name(spec, grid[1]) == "toy-reward_seed0-prefs_limit20"
    assert spec.group_keys == ["prefs.limit"]


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(ParamsError, match="unknown key"):
        _spec(tmp_path, extra=1)
    with pytest.raises(ParamsError, match="seed_key 'nope' is not a grid key"):
        _spec(tmp_path, seed_key="nope")
    with pytest.raises(ParamsError, match=r"claims\[0\]: model 'C' is not in 'models'"):
        _spec(tmp_path, claims=[{"name": "x", "better": {"model": "C", "metric": "acc"},
                                 "worse": {"model": "B", "metric": "acc"}}])
    with pytest.raises(ParamsError, match="study file not found"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["../../etc", "/tmp/x", "a/b", "..", ".hidden", "machine", ""])
def test_a_study_name_cannot_write_outside_its_report_folder(tmp_path, name):
    """The name becomes reports/<name>/ and git refs; breaks if a name could climb out of reports/ or land on the
    stages' machine-facts folder."""
    with pytest.raises(ParamsError, match="must be letters"):
        _spec(tmp_path, name=name)


def test_verdicts_reproduced_reversed_inconclusive(tmp_path):
    spec = _spec(tmp_path)
    rows = _rows(acc_a=[0.80, 0.81, 0.82], acc_b=[0.70, 0.70, 0.71])
    claims = {(c["claim"], c["prefs.limit"]): c for c in judge_claims(spec, rows)}
    assert claims[("A beats B", 10)]["verdict"] == "reproduced"
    assert claims[("A beats B", 20)]["verdict"] == "reversed"
    assert claims[("A calibrated", 10)]["verdict"] == "reproduced"  # lower ECE is better
    noisy = _rows(acc_a=[0.8, 0.6, 0.7], acc_b=[0.6, 0.8, 0.7])
    assert {c["verdict"] for c in judge_claims(spec, noisy) if c["claim"] == "A beats B"} == {"inconclusive"}


def test_summary_and_markdown(tmp_path):
    spec = _spec(tmp_path)
    rows = _rows(acc_a=[0.80, 0.81, 0.82], acc_b=[0.70, 0.70, 0.71])
    summary = summarise(spec, rows)
    row = next(s for s in summary if s["model"] == "A" and s["metric"] == "acc" and s["prefs.limit"] == 10)
    assert math.isclose(row["mean"], 0.81) and row["n_seeds"] == 3 and row["ci_low"] < 0.81 < row["ci_high"]
    text = markdown(spec, summary, judge_claims(spec, rows))
    assert "| A beats B | 10 |" in text and "reproduced" in text and "reversed" in text


def test_cells_cut_by_a_time_budget_are_named_in_the_report(tmp_path):
    spec = _spec(tmp_path)
    rows = _rows(acc_a=[0.80, 0.81, 0.82], acc_b=[0.70, 0.70, 0.71])
    summary, claims = summarise(spec, rows), judge_claims(spec, rows)
    assert "time budget" not in markdown(spec, summary, claims, rows)
    rows[1]["cut_by_time_budget"] = "A;B"
    text = markdown(spec, summary, claims, rows)
    assert f"{rows[1]['cell']} (A, B)" in text and "Cut by a time budget" in text
