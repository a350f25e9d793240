"""A noisy answerer: starts from the correct answer and corrupts it in named, checkable ways.

Error types, applied in this order, each with its own probability:

* "omission": drops true target facts (describe: some of them; questions: the answer is
  replaced by a true fact about a shape the question does not ask about), so recall falls and
  nothing false is said;
* "wrong_colour": recolours one mentioned object everywhere it is named (preferring a colour
  that no object of that shape has), or adds a false "The <shape> is <colour>." when no
  coloured fact is mentioned;
* "wrong_count": changes a stated count by one, or adds a false count;
* "wrong_relation": a spatial error: moves a stated location to another cell or flips a stated
  relation (left of <-> right of, above <-> below), or adds a false location;
* "absent_object": adds an object the scene does not have (with a location for describe).

Every error type is applicable to every prompt, and the named effect is guaranteed (the
oracle tests check it). Surface form varies: sentence order is shuffled (describe keeps each
object's sentences together) and counts are written as digits or words.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .language import RELATIONS, Fact, colour_of, count, exists, fact_holds, fact_sentence, location, true_facts
from .prompts import target_facts
from .scene import COLOURS, COLS, ROWS, SHAPES, SIZES, Scene

ERROR_TYPES = ("omission", "wrong_colour", "wrong_count", "wrong_relation", "absent_object")
_FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def _omission(scene: Scene, prompt: dict, facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    targets = set(target_facts(scene, prompt))
    kept = [f for f in facts if f not in targets]
    present = [f for f in facts if f in targets]
    if prompt["kind"] == "describe" and len(present) > 1:
        drop = set(rng.choice(len(present), size=int(rng.integers(1, len(present))), replace=False).tolist())
        return [f for i, f in enumerate(present) if i not in drop] + kept
    # an off-topic true fact: nothing about the asked shapes, which could answer the question implicitly
    asked = {prompt.get("shape"), prompt.get("other_shape")}
    spare = sorted(f for f in true_facts(scene) if f.shape not in asked
                   and (f.kind == "count" or f.kind == "exists" and f.size))
    return kept + [_pick(rng, spare)]


def _false_colour_fact(scene: Scene, rng: np.random.Generator) -> Fact:
    options = [colour_of(s, c) for s in SHAPES for c in COLOURS if not fact_holds(scene, colour_of(s, c))]
    return _pick(rng, options)


def _recolour(fact: Fact, old: tuple[str, str], new: str) -> Fact:
    values = {}
    if (fact.colour, fact.shape) == old:
        values["colour"] = new
    if fact.kind == "relation" and (fact.other_colour, fact.other_shape) == old:
        values["other_colour"] = new
    return replace(fact, **values) if values else fact


def _wrong_colour(scene: Scene, prompt: dict, facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    coloured = [i for i, f in enumerate(facts) if f.kind in ("exists", "location", "relation", "colour")]
    if not coloured:
        return facts + [_false_colour_fact(scene, rng)]
    fact = facts[_pick(rng, coloured)]
    if fact.kind == "colour":
        new = _pick(rng, [c for c in COLOURS if c != fact.colour])
        out = [colour_of(fact.shape, new) if f == fact else f for f in facts]
    else:
        if fact.kind == "relation" and rng.random() < 0.5:
            old = (fact.other_colour, fact.other_shape)
        else:
            old = (fact.colour, fact.shape)
        partners = {(f.other_colour, f.other_shape) if (f.colour, f.shape) == old else (f.colour, f.shape)
                    for f in facts if f.kind == "relation"}  # a relation cannot end up about one object
        others = [c for c in COLOURS if c != old[0] and (c, old[1]) not in partners]
        absent = [c for c in others if scene.find(c, old[1]) is None]
        new = _pick(rng, absent or others)
        out = [_recolour(f, old, new) for f in facts]
    if all(fact_holds(scene, f) for f in out):  # only when every colour of the shape is present
        out.append(_false_colour_fact(scene, rng))
    return out


def _wrong_count(scene: Scene, prompt: dict, facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    counts = [i for i, f in enumerate(facts) if f.kind == "count"]
    index = _pick(rng, counts) if counts else None
    shape = facts[index].shape if counts else _pick(rng, list(SHAPES))
    n = len(scene.with_shape(shape))
    wrong = count(shape, _pick(rng, [m for m in (n - 1, n + 1) if m >= 0]))
    return facts + [wrong] if index is None else facts[:index] + [wrong] + facts[index + 1:]


def _wrong_relation(scene: Scene, prompt: dict, facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    spatial = [i for i, f in enumerate(facts) if f.kind in ("location", "relation")]
    if not spatial:
        obj = _pick(rng, list(scene.objects))
        fact, index = location(obj.colour, obj.shape, obj.row, obj.col), None
    else:
        index = _pick(rng, spatial)
        fact = facts[index]
    if fact.kind == "relation":
        wrong = replace(fact, relation=_FLIP[fact.relation])
        if fact_holds(scene, wrong):  # only after a recolouring made the original false
            wrong = _pick(rng, [replace(fact, relation=r) for r in RELATIONS
                                if not fact_holds(scene, replace(fact, relation=r))])
    else:
        cells = [(r, c) for r in ROWS for c in COLS if not fact_holds(scene, location(fact.colour, fact.shape, r, c))]
        row, col = _pick(rng, cells)
        wrong = location(fact.colour, fact.shape, row, col)
    return facts + [wrong] if index is None else facts[:index] + [wrong] + facts[index + 1:]


def _absent_object(scene: Scene, prompt: dict, facts: list[Fact], rng: np.random.Generator) -> list[Fact]:
    colour, shape = _pick(rng, [(c, s) for c in COLOURS for s in SHAPES if scene.find(c, s) is None])
    added = [exists(colour, shape, _pick(rng, list(SIZES)))]
    if prompt["kind"] == "describe":
        added.append(location(colour, shape, _pick(rng, list(ROWS)), _pick(rng, list(COLS))))
    return facts + added


_APPLY: dict[str, Callable[[Scene, dict, list[Fact], np.random.Generator], list[Fact]]] = {
    "omission": _omission, "wrong_colour": _wrong_colour, "wrong_count": _wrong_count,
    "wrong_relation": _wrong_relation, "absent_object": _absent_object,
}


def check_error_probs(error_probs: dict[str, float]) -> dict[str, float]:
    """Reject unknown error types and probabilities outside [0, 1]; missing types get 0."""
    if not isinstance(error_probs, dict):
        raise ValueError(f"error_probs must be a dict, got {type(error_probs).__name__}")
    unknown = sorted(set(error_probs) - set(ERROR_TYPES))
    if unknown:
        raise ValueError(f"unknown error type {unknown[0]!r}; expected some of {ERROR_TYPES}")
    for name, p in error_probs.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"error_probs[{name!r}] must be a probability in [0, 1], got {p!r}")
    return {name: float(error_probs.get(name, 0.0)) for name in ERROR_TYPES}


def _subject(fact: Fact) -> tuple:
    if fact.kind in ("exists", "location"):
        return fact.colour, fact.shape
    return (fact,)


def _surface(facts: list[Fact], prompt: dict, rng: np.random.Generator) -> str:
    groups: dict[tuple, list[Fact]] = {}
    for fact in dict.fromkeys(facts):
        key = _subject(fact) if prompt["kind"] == "describe" else (fact,)
        groups.setdefault(key, []).append(fact)
    ordered = list(groups.values())
    words = bool(rng.random() < 0.5)
    return " ".join(fact_sentence(f, number_words=words)
                    for i in rng.permutation(len(ordered)) for f in ordered[int(i)])


def generate_response(scene: Scene, prompt: dict[str, Any], rng: np.random.Generator,
                      error_probs: dict[str, float]) -> tuple[str, list[str]]:
    """Return (text, error types applied), the latter ["correct"] when no error was drawn."""
    probs = check_error_probs(error_probs)
    facts = target_facts(scene, prompt)
    applied = []
    for name in ERROR_TYPES:
        if rng.random() < probs[name]:
            facts = _APPLY[name](scene, prompt, facts, rng)
            applied.append(name)
    return _surface(facts, prompt, rng), applied or ["correct"]


def forced_response(scene: Scene, prompt: dict[str, Any], rng: np.random.Generator,
                    error_type: str) -> tuple[str, list[str]]:
    """A response with exactly `error_type` applied (or none for "correct")."""
    if error_type == "correct":
        return generate_response(scene, prompt, rng, {})
    return generate_response(scene, prompt, rng, {error_type: 1.0})
