"""Gate boundaries and the champion rule, as pure functions (alignflow/runtime/gates.py)."""
from __future__ import annotations

import math

import pytest

from alignflow.runtime import gates
from alignflow.runtime.gates import (Provenance, baseline_gate, champion_decision, interval_gate, lisa_gate, lower_bound_gate,
                             recompute, upper_bound_gate)

SMOKE = Provenance("smoke", gates.eval_set("data/eval.jsonl", "abc", 24))
CUT = Provenance("smoke", SMOKE.eval_set, stopped_by_time_budget=True)


def test_interval_low_exactly_at_the_threshold_fails():
    """An interval that touches its threshold has not cleared it; `>=` in interval_gate breaks this."""
    assert not interval_gate("acc", 0.7, 0.5, 0.5, SMOKE, "acc vs chance")["passed"]
    assert interval_gate("acc", 0.7, 0.5 + 1e-9, 0.5, SMOKE, "acc vs chance")["passed"]
    assert not interval_gate("gain", 0.1, 0.0, 0.0, SMOKE, "gain over SFT")["passed"]
    assert not interval_gate("gain", 0.1, -0.01, 0.0, SMOKE, "gain over SFT")["passed"]


def test_gram_equal_to_bt_passes_and_below_fails():
    """'At least the BT model' admits a tie; `>` in baseline_gate breaks the first assertion."""
    assert baseline_gate("test_ood/acc_gold", 0.625, 0.625, SMOKE.eval_set, SMOKE, "OOD acc vs BT")["passed"]
    assert not baseline_gate("test_ood/acc_gold", 0.6249, 0.625, SMOKE.eval_set, SMOKE, "OOD acc vs BT")["passed"]


def test_baseline_measured_on_another_evaluation_set_fails():
    """A baseline from other test pairs is not comparable; dropping the eval-set check breaks this."""
    other = gates.eval_set("data/eval.jsonl", "abc", 400)
    gate = baseline_gate("test_ood/acc_gold", 0.9, 0.5, other, SMOKE, "OOD acc vs BT")
    assert not gate["passed"] and "another evaluation set" in gate["reason"]


def test_upper_and_lower_bounds_at_their_threshold():
    """Perplexity 'at most' admits equality, BLEU 'above' does not; swapping `<=`/`>` breaks this."""
    assert upper_bound_gate("val_ppl", 30.0, 30.0, SMOKE)["passed"]
    assert not upper_bound_gate("val_ppl", 30.0001, 30.0, SMOKE)["passed"]
    assert not lower_bound_gate("bleu", 5.0, 5.0, SMOKE)["passed"]
    assert lower_bound_gate("bleu", 5.01, 5.0, SMOKE)["passed"]


def test_lisa_gate_boundaries():
    """Budget met exactly passes; zero layers, over budget or an inexact reload fail."""
    assert lisa_gate(1, 4, 8.0, 8.5, 0.0625, True, SMOKE)["passed"]  # +6.25% on a 6.25% budget (exact floats)
    assert not lisa_gate(1, 4, 8.0, 8.5001, 0.0625, True, SMOKE)["passed"]
    assert not lisa_gate(0, 4, 10.0, 10.0, 0.05, True, SMOKE)["passed"]
    gate = lisa_gate(2, 4, 10.0, 10.0, 0.05, False, SMOKE)
    assert not gate["passed"] and "round trip changed the logits" in gate["reason"] and gate["value"] == 0.5


PASSING = {
    "upper_bound": lambda p: upper_bound_gate("val_ppl", 10.0, 30.0, p),
    "lower_bound": lambda p: lower_bound_gate("bleu", 9.0, 5.0, p),
    "interval": lambda p: interval_gate("acc", 0.9, 0.8, 0.5, p, "acc vs chance"),
    "baseline": lambda p: baseline_gate("acc", 0.9, 0.5, p.eval_set, p, "acc vs BT"),
    "lisa": lambda p: lisa_gate(2, 4, 10.0, 10.0, 0.05, True, p),
}


@pytest.mark.parametrize("kind", sorted(PASSING))
def test_time_budget_vetoes_every_kind(kind):
    """A model cut short by its time budget fails however good its number; removing the veto breaks this."""
    assert PASSING[kind](SMOKE)["passed"]
    vetoed = PASSING[kind](CUT)
    assert not vetoed["passed"] and gates.TIME_BUDGET_VETO in vetoed["reason"]
    assert vetoed["stopped_by_time_budget"] is True and vetoed["kind"] == kind


@pytest.mark.parametrize("kind", sorted(PASSING))
def test_every_gate_records_what_it_was_measured_on(kind):
    """profile, eval_set and the rule's inputs are stored, and recompute reproduces the gate exactly."""
    gate = PASSING[kind](SMOKE)
    assert gate["profile"] == "smoke" and gate["eval_set"] == "data/eval.jsonl md5=abc n=24"
    assert {"passed", "metric", "value", "higher_is_better", "reason", "threshold"} <= set(gate)
    assert recompute(gate, {}) == gate


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_a_gate_without_a_usable_value_fails(value):
    """A None/NaN value cannot defend a champion: the interval passes but the gate must not."""
    gate = interval_gate("acc", value, 0.8, 0.5, SMOKE, "acc vs chance")
    assert not gate["passed"] and "no usable value" in gate["reason"]
    assert not upper_bound_gate("val_ppl", value, 30.0, SMOKE)["passed"]


def test_numpy_scalars_are_usable_values():
    """Stages compute some numbers with numpy; a float32 or int64 value must not fail a gate as 'unusable'."""
    import numpy as np

    assert gates.usable(np.float32(0.7)) and gates.usable(np.int64(3)) and not gates.usable(True)
    assert lower_bound_gate("bleu", np.float32(9.0), 5.0, SMOKE)["passed"]


def test_recompute_applies_todays_rules_to_what_was_committed():
    """A verdict written by older rules is decided again from its inputs; a legacy gate gets the vetoes."""
    stale = {**interval_gate("acc", 0.7, 0.5, 0.5, SMOKE, "acc"), "passed": True}  # written by a `>=` rule
    assert not recompute(stale, {})["passed"]
    legacy = {"passed": True, "metric": "acc", "value": 0.7, "higher_is_better": True, "threshold": 0.5}
    again = recompute(legacy, {"stopped_by_time_budget": False})
    assert again["passed"] and again["profile"] == gates.UNKNOWN and again["eval_set"] == gates.UNKNOWN
    cut = recompute(legacy, {"stopped_by_time_budget": True})
    assert not cut["passed"] and gates.TIME_BUDGET_VETO in cut["reason"]
    assert not recompute({**legacy, "value": None}, {})["passed"]
    renamed = recompute({**legacy, "kind": "interval", "inputs": {"low": 0.6}}, {})  # a rule whose arguments changed
    assert renamed["passed"] and "recorded verdict kept" in renamed["reason"]


def _incumbent(version="1", **gate):
    return {"version": version, **{k: gate[k] for k in ("metric", "value", "higher_is_better", "profile", "eval_set")}}


def test_champion_tie_goes_to_the_newer_version():
    """'Not worse' includes equal; a strict comparison would keep the incumbent on a tie."""
    gate = interval_gate("acc", 0.75, 0.6, 0.5, SMOKE, "acc")
    took, reason = champion_decision(gate, _incumbent(**gate))
    assert took and "ties champion v1" in reason


def test_champion_better_and_worse_in_both_directions():
    """Higher-is-better and lower-is-better gates each keep a champion against a worse version."""
    acc = interval_gate("acc", 0.75, 0.6, 0.5, SMOKE, "acc")
    assert champion_decision(acc, _incumbent(**{**acc, "value": 0.74}))[0]
    took, reason = champion_decision(acc, _incumbent(**{**acc, "value": 0.76}))
    assert not took and "worse than champion v1" in reason
    ppl = upper_bound_gate("val_ppl", 20.0, 30.0, SMOKE)
    assert champion_decision(ppl, _incumbent(**{**ppl, "value": 21.0}))[0]
    assert not champion_decision(ppl, _incumbent(**{**ppl, "value": 19.0}))[0]


@pytest.mark.parametrize("field, other", [("profile", "default"), ("eval_set", "data/eval.jsonl md5=abc n=400"),
                                          ("metric", "acc_label"), ("profile", None), ("eval_set", gates.UNKNOWN)])
def test_a_champion_measured_otherwise_is_neither_compared_nor_displaced(field, other):
    """Numbers from another profile or evaluation set never decide: the champion stays, the reason says why."""
    gate = interval_gate("acc", 0.99, 0.9, 0.5, SMOKE, "acc")
    incumbent = _incumbent(**{**gate, "value": 0.51, field: other})
    took, reason = champion_decision(gate, incumbent)
    assert not took and "not comparable" in reason and field in reason and "champion unchanged" in reason


def test_champion_rule_edges():
    """A failed gate never takes champion; the first passed one does; an incumbent without a value yields."""
    gate = interval_gate("acc", 0.75, 0.6, 0.5, SMOKE, "acc")
    assert champion_decision(gate, None) == (True, "gate passed; first champion")
    took, reason = champion_decision(PASSING["interval"](CUT), None)
    assert not took and reason.startswith("gate failed") and gates.TIME_BUDGET_VETO in reason
    assert champion_decision(gate, _incumbent(**{**gate, "value": None}))[0]
    took, reason = champion_decision({**gate, "value": math.nan}, None)  # a hand-written gate claiming a pass
    assert not took and "cannot be compared" in reason
