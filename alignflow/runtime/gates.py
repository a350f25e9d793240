"""Registry gates as pure functions: plain numbers in, the `gate` dict a stage writes to metrics.json out.

A gate decides whether a model may become `champion`; it is registry policy rather than science,
so it lives beside the registry, which reads the same dict. One function per kind of gate:

- `upper_bound_gate`    value at most a threshold (base_lm: validation perplexity)
- `lower_bound_gate`    value strictly above a threshold (st_*: BLEU)
- `interval_gate`       a 95% interval's low end strictly above a threshold (sft, bt_rm, policies, visual RMs):
                        a low end exactly at the threshold fails, since the interval then touches it
- `baseline_gate`       value at least a baseline measured on the same evaluation set (gram vs BT): a tie passes
- `lisa_gate`           at least one layer replaced, perplexity increase within budget, exact reload

Every gate dict holds `passed, metric, value, higher_is_better, threshold, reason` plus

- `profile` and `eval_set`: what the number was measured under; the registry compares numbers only
  between versions whose gates agree on both (see `champion_decision`);
- `stopped_by_time_budget`: a model cut short by its time budget is not the model its params
  describe, so it fails whatever its number (a veto);
- `kind` and `inputs`: the rule and the plain numbers it was applied to, so `recompute` can decide the
  gate again from a committed metrics.json with today's rules.

A gate whose value is None or not finite fails: there is nothing to defend a champion with.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alignflow.runtime.tracking import file_md5

UNKNOWN = "unknown"
TIME_BUDGET_VETO = "vetoed: training was cut short by its time budget"


@dataclass(frozen=True)
class Provenance:
    """What a gate's number was measured under."""

    profile: str
    eval_set: str
    stopped_by_time_budget: bool | None = None  # None: the stage has no time budget


def eval_set(path: str, md5: str, n: int) -> str:
    """An evaluation set's identity: which file (and its content hash) and how many items were used."""
    return f"{path} md5={md5} n={int(n)}"


def usable(value: Any) -> bool:
    """A finite real number (bools excluded, numpy scalars included): something two models can be compared on."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _gate(kind: str, inputs: dict, passed: bool, metric: str, value: Any, threshold: Any, higher_is_better: bool,
          reason: str, provenance: Provenance) -> dict:
    """The gate dict, with the vetoes every kind shares applied."""
    if not usable(value):
        passed, reason = False, f"{reason}; no usable value ({value!r})"
    if provenance.stopped_by_time_budget:
        passed, reason = False, f"{reason}; {TIME_BUDGET_VETO}"
    return {"passed": bool(passed), "metric": metric, "value": value, "threshold": threshold,
            "higher_is_better": higher_is_better, "reason": reason, "kind": kind, "inputs": inputs,
            "profile": provenance.profile, "eval_set": provenance.eval_set,
            "stopped_by_time_budget": provenance.stopped_by_time_budget}


def _fmt(x: Any, spec: str = ".4f") -> str:
    return format(x, spec) if usable(x) else repr(x)


def upper_bound_gate(metric: str, value: float | None, max_value: float, provenance: Provenance) -> dict:
    """Passes when `value <= max_value` (lower is better); equal to the bound passes."""
    passed = usable(value) and value <= max_value
    reason = f"{metric} {_fmt(value)} vs max {max_value}"
    return _gate("upper_bound", {"metric": metric, "value": value, "max_value": max_value}, passed, metric, value,
                 max_value, False, reason, provenance)


def lower_bound_gate(metric: str, value: float | None, min_value: float, provenance: Provenance,
                     detail: str = "") -> dict:
    """Passes when `value > min_value` (higher is better); equal to the bound fails."""
    passed = usable(value) and value > min_value
    reason = f"{metric} {_fmt(value, '.2f')}{' ' + detail if detail else ''} vs min {min_value}"
    return _gate("lower_bound", {"metric": metric, "value": value, "min_value": min_value, "detail": detail},
                 passed, metric, value, min_value, True, reason, provenance)


def interval_gate(metric: str, value: float | None, ci_low: float | None, threshold: float,
                  provenance: Provenance, label: str) -> dict:
    """Passes when the 95% interval's low end `ci_low` lies strictly above `threshold`.

    `value` is the number the registry compares champions on (it may be another quantity than the
    interval's, e.g. SFT's gold reward mean beside the interval of its gain over the base LM).
    """
    passed = usable(ci_low) and ci_low > threshold
    reason = f"{label}: 95% CI low {_fmt(ci_low, '+.4f')} vs {threshold}"
    return _gate("interval", {"metric": metric, "value": value, "ci_low": ci_low, "threshold": threshold,
                              "label": label}, passed, metric, value, threshold, True, reason, provenance)


def baseline_gate(metric: str, value: float | None, baseline: float | None, baseline_eval_set: str,
                  provenance: Provenance, label: str) -> dict:
    """Passes when `value >= baseline` (a tie passes), both measured on the same evaluation set."""
    same_set = baseline_eval_set == provenance.eval_set
    passed = same_set and usable(value) and usable(baseline) and value >= baseline
    reason = f"{label} {_fmt(value)} vs baseline {_fmt(baseline)}"
    if not same_set:
        reason += f"; baseline measured on another evaluation set ({baseline_eval_set} vs {provenance.eval_set})"
    return _gate("baseline", {"metric": metric, "value": value, "baseline": baseline,
                              "baseline_eval_set": baseline_eval_set, "label": label},
                 passed, metric, value, baseline, True, reason, provenance)


def lisa_gate(n_replaced: int, n_layers: int, base_ppl: float, lisa_ppl: float, budget: float, roundtrip: bool,
              provenance: Provenance) -> dict:
    """At least one layer replaced, val-perplexity increase at most `budget`, and an exact save/reload.

    The compared value is the fraction of layers replaced (more compression is better).
    """
    fraction = round(n_replaced / n_layers, 4)
    increase = lisa_ppl / base_ppl - 1.0
    problems = []
    if n_replaced < 1:
        problems.append(f"no layer within the budget (saved the deepest-layer full ablation, ppl {increase:+.2%})")
    elif increase > budget:
        problems.append(f"ppl increase {increase:+.2%} > budget {budget:.2%}")
    if not roundtrip:
        problems.append("save/load round trip changed the logits")
    reason = (f"{n_replaced}/{n_layers} layers replaced, val ppl {base_ppl:.3f} -> {lisa_ppl:.3f} "
              f"({increase:+.2%}, budget {budget:.2%}), round trip {'exact' if roundtrip else 'NOT exact'}")
    if problems:
        reason += "; " + "; ".join(problems)
    inputs = {"n_replaced": n_replaced, "n_layers": n_layers, "base_ppl": base_ppl, "lisa_ppl": lisa_ppl,
              "budget": budget, "roundtrip": roundtrip}
    return _gate("lisa", inputs, not problems, "fraction_layers_replaced", fraction, round(1.0 / n_layers, 4), True,
                 reason, provenance)


KINDS: dict[str, Callable[..., dict]] = {"upper_bound": upper_bound_gate, "lower_bound": lower_bound_gate,
                                          "interval": interval_gate, "baseline": baseline_gate, "lisa": lisa_gate}


def recompute(gate: dict, metrics: dict) -> dict:
    """The gate decided again, with today's rules, from what the stage committed.

    A gate with a known `kind` is recomputed from its recorded `inputs`; an older gate without one
    (or whose inputs no longer fit the rule's signature) keeps its verdict and gets the shared vetoes. The time budget is read from the gate or, for
    older gates, from the metrics' top-level `stopped_by_time_budget`.
    """
    stopped = gate.get("stopped_by_time_budget")
    if stopped is None:
        stopped = metrics.get("stopped_by_time_budget")
    provenance = Provenance(profile=str(gate.get("profile") or UNKNOWN), eval_set=str(gate.get("eval_set") or UNKNOWN),
                            stopped_by_time_budget=None if stopped is None else bool(stopped))
    kind, reason = gate.get("kind"), str(gate.get("reason", "recorded verdict"))
    if kind in KINDS and isinstance(gate.get("inputs"), dict):
        try:
            return KINDS[kind](**gate["inputs"], provenance=provenance)
        except TypeError as exc:  # inputs written for another version of the rule: keep the recorded verdict
            reason = f"{reason}; recorded verdict kept ({kind} inputs do not fit today's rule: {exc})"
    return _gate(str(kind or "recorded"), {}, bool(gate.get("passed")), str(gate.get("metric", "")), gate.get("value"),
                 gate.get("threshold"), bool(gate.get("higher_is_better", True)), reason, provenance)


def _comparability(gate: dict, incumbent: dict) -> list[str]:
    """What differs between two gates' measurements (empty: their values may be compared)."""
    differences = []
    for key in ("metric", "higher_is_better", "profile", "eval_set"):
        ours, theirs = gate.get(key), incumbent.get(key)
        if ours in (None, UNKNOWN) or theirs in (None, UNKNOWN) or ours != theirs:
            differences.append(f"{key} {theirs!r} vs {ours!r}")
    return differences


def champion_decision(gate: dict, incumbent: dict | None) -> tuple[bool, str]:
    """Whether a new version with `gate` takes `champion` from `incumbent`, and why.

    `incumbent` is the current champion's gate as its version recorded it (plus `version`), or None.

    - A failed gate (time-budget veto and missing value included) never takes champion.
    - No champion yet: a passed gate takes it.
    - An incumbent measured under another metric, profile or evaluation set (or one that did not
      record them) is not compared with: its number and ours measure different things. The new
      version does not displace it either: a champion changes only on evidence, and the only evidence
      here cannot be weighed. Otherwise a `smoke` run would replace the `default` profile's champion
      with a toy model just by running later. The reason names what differs; a person who wants the
      new version served moves the alias deliberately.
    - A comparable incumbent without a usable value has nothing to defend: the new version takes it.
    - Otherwise the new version takes champion when it is not worse; a tie goes to the newer version
      (same evidence, newer code and lineage).
    """
    metric, value = gate.get("metric", ""), gate.get("value")
    if not gate.get("passed"):
        return False, "gate failed: " + str(gate.get("reason", f"{metric}={value}"))
    if not usable(value):
        return False, f"gate passed but its value {value!r} cannot be compared; not champion"
    if incumbent is None:
        return True, "gate passed; first champion"
    version = incumbent.get("version")
    differences = _comparability(gate, incumbent)
    if differences:
        return False, (f"gate passed, but champion v{version} is not comparable ({'; '.join(differences)}); "
                       "champion unchanged")
    old = incumbent.get("value")
    if not usable(old):
        return True, f"gate passed; champion v{version} recorded no usable {metric} value ({old!r})"
    higher = bool(gate.get("higher_is_better", True))
    if value == old:
        return True, f"gate passed; {metric} {value:.4g} ties champion v{version}; the newer version takes it"
    if (value > old) == higher:
        return True, f"gate passed; {metric} {value:.4g} vs champion v{version} {old:.4g}"
    return False, f"gate passed but {metric} {value:.4g} is worse than champion v{version} ({old:.4g})"


def file_eval_set(root: Path, path: str | Path, n: int) -> str:
    """`eval_set` of the first `n` items of a workspace file (the one helper here that reads a file).

    `path` is absolute or relative to `root`; the eval set is named by the path relative to `root`,
    so gates compare across workspaces.
    """
    full = Path(path) if Path(path).is_absolute() else root / path
    try:
        rel = full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = str(path)
    return eval_set(rel, file_md5(full), n)
