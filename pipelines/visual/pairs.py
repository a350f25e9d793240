"""Preference pairs in one record schema for every kind of training data.

    {"id", "kind": "visual"|"caption"|"scene_text"|"text_world", "prompt", "chosen", "rejected",
     "gold_chosen", "gold_rejected", "label_agrees_with_gold", "family",
     "image" (visual only), "spec"}

For generated kinds spec = {"scene", "prompt", "chosen_errors", "rejected_errors"}; "chosen"
is what a noisy labeler preferred, so label_agrees_with_gold records whether it flipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import require_keys
from .generator import ERROR_TYPES, forced_response, generate_response
from .language import caption
from .oracle import grade
from .prompts import scene_text_prompt
from .scene import Scene

MAX_TRIES = 20  # response draws before falling back to the correct answer vs a forced error
GOLD_DIGITS = 6
TEXT_WORLD_KEYS = ("id", "prompt", "chosen", "rejected", "gold_chosen", "gold_rejected", "family")


def _gold(scene: Scene, prompt: dict[str, Any], text: str) -> float:
    return round(grade(scene, prompt, text)["gold"], GOLD_DIGITS)


def preference_pair(scene: Scene, prompt: dict[str, Any], rng: np.random.Generator,
                    error_probs: dict[str, float], label_noise: float) -> dict[str, Any]:
    """Two responses with different gold; the labeler prefers the better one unless it flips.

    If MAX_TRIES draws never differ in gold (e.g. all error probabilities are 0), the pair is the
    correct answer against one with a single random error type, which always scores lower.
    """
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise!r}")
    for _ in range(MAX_TRIES):
        text_a, err_a = generate_response(scene, prompt, rng, error_probs)
        text_b, err_b = generate_response(scene, prompt, rng, error_probs)
        gold_a, gold_b = _gold(scene, prompt, text_a), _gold(scene, prompt, text_b)
        if gold_a != gold_b and text_a != text_b:
            break
    else:
        text_a, err_a = forced_response(scene, prompt, rng, "correct")
        text_b, err_b = forced_response(scene, prompt, rng, ERROR_TYPES[int(rng.integers(len(ERROR_TYPES)))])
        gold_a, gold_b = _gold(scene, prompt, text_a), _gold(scene, prompt, text_b)
    better, worse = ((text_a, gold_a, err_a), (text_b, gold_b, err_b))
    if gold_b > gold_a:
        better, worse = worse, better
    flipped = bool(rng.random() < label_noise)
    chosen, rejected = (worse, better) if flipped else (better, worse)
    return {"chosen": chosen[0], "rejected": rejected[0], "gold_chosen": chosen[1], "gold_rejected": rejected[1],
            "label_agrees_with_gold": not flipped, "chosen_errors": chosen[2], "rejected_errors": rejected[2]}


def _record(rid: str, kind: str, prompt_text: str, family: str, scene: Scene, prompt: dict[str, Any],
            pair: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "kind": kind, "prompt": prompt_text, "chosen": pair["chosen"], "rejected": pair["rejected"],
            "gold_chosen": pair["gold_chosen"], "gold_rejected": pair["gold_rejected"],
            "label_agrees_with_gold": pair["label_agrees_with_gold"], "family": family,
            "spec": {"scene": scene.to_dict(), "prompt": dict(prompt),
                     "chosen_errors": pair["chosen_errors"], "rejected_errors": pair["rejected_errors"]}}


def visual_record(rid: str, scene: Scene, prompt: dict[str, Any], image: str, rng: np.random.Generator,
                  error_probs: dict[str, float], label_noise: float) -> dict[str, Any]:
    """The question alone is the prompt; the scene is only seen through `image`."""
    pair = preference_pair(scene, prompt, rng, error_probs, label_noise)
    record = _record(rid, "visual", prompt["question"], prompt["kind"], scene, prompt, pair)
    record["image"] = image
    return record


def caption_record(rid: str, scene: Scene, prompt: dict[str, Any], rng: np.random.Generator,
                   error_probs: dict[str, float], label_noise: float) -> dict[str, Any]:
    """The visual task with the image replaced by its canonical caption."""
    pair = preference_pair(scene, prompt, rng, error_probs, label_noise)
    return _record(rid, "caption", caption(scene) + "\n" + prompt["question"], prompt["kind"], scene, prompt, pair)


def scene_text_record(rid: str, scene: Scene, prompt: dict[str, Any], relevance: str, rng: np.random.Generator,
                      error_probs: dict[str, float], label_noise: float) -> dict[str, Any]:
    """The scene told in prose (see prompts.scene_text_prompt); family "scene_<relevance>_<kind>"."""
    text = scene_text_prompt(scene, prompt, relevance, rng)
    pair = preference_pair(scene, prompt, rng, error_probs, label_noise)
    return _record(rid, "scene_text", text, f"scene_{relevance}_{prompt['kind']}", scene, prompt, pair)


def text_world_record(record: dict[str, Any], index: int) -> dict[str, Any]:
    """A text-world `prefs` record in this schema; the id gets a "text_world-" prefix to stay unique."""
    require_keys(record, TEXT_WORLD_KEYS, f"text world record {index}")
    gold_chosen, gold_rejected = float(record["gold_chosen"]), float(record["gold_rejected"])
    agrees = record.get("label_agrees_with_gold")
    if agrees is None and gold_chosen != gold_rejected:
        agrees = gold_chosen > gold_rejected
    return {"id": f"text_world-{record['id']}", "kind": "text_world", "prompt": record["prompt"],
            "chosen": record["chosen"], "rejected": record["rejected"],
            "gold_chosen": gold_chosen, "gold_rejected": gold_rejected, "label_agrees_with_gold": agrees,
            "family": record["family"], "spec": dict(record.get("spec") or {})}
