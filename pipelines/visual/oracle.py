"""The gold grade of a response: how much of the answer it gives, and how much it makes up.

    hallucination_rate = false mentioned facts / mentioned facts   (0.0 when nothing was read)
    recall             = target facts stated / target facts
    gold               = recall - hallucination_rate               (in [-1, 1])

Mentioned facts are counted once each, so repeating a true sentence cannot dilute a false one.
Every mentioned fact is checked against the scene, asked about or not: an unasked false claim
is still a hallucination. Gold subtracts the two rates so that neither way of gaming one of
them pays: saying nothing has recall 0 (gold 0), and padding an answer with made-up objects
raises the hallucination rate. The ideal answer scores 1; a fully false one scores -1.
Sentences outside the templated language are ignored (reported as n_unparsed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .language import fact_holds, fact_sentence, parse_report
from .prompts import target_facts
from .scene import Scene


def grade(scene: Scene, prompt: dict[str, Any], response: str) -> dict[str, Any]:
    report = parse_report(response)
    mentioned = list(dict.fromkeys(report.facts))
    false = [f for f in mentioned if not fact_holds(scene, f)]
    targets = target_facts(scene, prompt)
    stated = set(mentioned)
    n_stated = sum(1 for f in targets if f in stated)
    hallucination_rate = len(false) / len(mentioned) if mentioned else 0.0
    recall = n_stated / len(targets)
    return {
        "gold": recall - hallucination_rate,
        "hallucination_rate": hallucination_rate,
        "recall": recall,
        "n_facts": len(mentioned),
        "n_false": len(false),
        "n_targets": len(targets),
        "n_stated": n_stated,
        "n_unparsed": report.n_unparsed,
        "false_facts": [fact_sentence(f) for f in false],
    }


def oracle_scores(records: list[dict], responses: list[str]) -> dict[str, np.ndarray]:
    """Per-response hallucination rate, recall and gold from each record's scene graph."""
    graded = [grade(Scene.from_dict(r["spec"]["scene"]), r["spec"]["prompt"], y) for r, y in zip(records, responses)]
    return {k: np.array([g[k] for g in graded], dtype=np.float64) for k in ("hallucination_rate", "recall", "gold")}
