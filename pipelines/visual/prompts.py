"""Questions about a scene, the facts that answer them, and text-only phrasings of scenes.

A prompt is a JSON-able dict: {"kind", "question"} plus the object fields the oracle needs
("shape", "colour", "other_shape", "other_colour"). Kinds that a scene cannot support fall
back to "locate" (which every non-empty scene supports): "attribute" needs a shape present
exactly once, "relation" needs two objects. The returned "kind" is the kind actually made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .language import Fact, count, colour_of, exists, fact_sentence, location, relation
from .scene import SHAPES, Obj, Scene

PROMPT_KINDS = ("describe", "count", "locate", "attribute", "relation")
QUESTION_KINDS = PROMPT_KINDS[1:]
DESCRIBE_QUESTION = "Describe the image."


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def unique_shapes(scene: Scene) -> list[str]:
    return [s for s in SHAPES if len(scene.with_shape(s)) == 1]


def make_prompt(scene: Scene, kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """A question of `kind` about the scene (or its fallback, see the module docstring)."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {PROMPT_KINDS}")
    if (kind == "attribute" and not unique_shapes(scene)) or (kind == "relation" and len(scene.objects) < 2):
        kind = "locate"
    if kind == "describe":
        return {"kind": kind, "question": DESCRIBE_QUESTION}
    if kind == "count":
        shape = _pick(rng, list(SHAPES))
        return {"kind": kind, "question": f"How many {shape}s are there?", "shape": shape}
    if kind == "attribute":
        shape = _pick(rng, unique_shapes(scene))
        return {"kind": kind, "question": f"What colour is the {shape}?", "shape": shape}
    first = _pick(rng, list(scene.objects))
    if kind == "locate":
        return {"kind": kind, "question": f"Where is the {first.colour} {first.shape}?",
                "shape": first.shape, "colour": first.colour}
    second = _pick(rng, [o for o in scene.objects if o is not first])
    return {"kind": kind,
            "question": f"Where is the {first.colour} {first.shape} relative to the {second.colour} {second.shape}?",
            "shape": first.shape, "colour": first.colour,
            "other_shape": second.shape, "other_colour": second.colour}


def _object(scene: Scene, prompt: dict[str, Any], colour_key: str, shape_key: str) -> Obj:
    try:
        colour, shape = prompt[colour_key], prompt[shape_key]
    except KeyError as exc:
        raise ValueError(f"{prompt.get('kind')} prompt is missing field {exc.args[0]!r}") from None
    obj = scene.find(colour, shape)
    if obj is None:
        raise ValueError(f"prompt asks about a {colour} {shape}, which is not in the scene")
    return obj


def target_facts(scene: Scene, prompt: dict[str, Any]) -> list[Fact]:
    """What a complete, correct answer states: for describe every object's sized exists and location."""
    kind = prompt.get("kind")
    if kind == "describe":
        return [f for o in scene.objects
                for f in (exists(o.colour, o.shape, o.size), location(o.colour, o.shape, o.row, o.col))]
    if kind == "count":
        if prompt.get("shape") not in SHAPES:
            raise ValueError(f"count prompt has bad shape {prompt.get('shape')!r}")
        return [count(prompt["shape"], len(scene.with_shape(prompt["shape"])))]
    if kind == "attribute":
        same = scene.with_shape(prompt.get("shape"))
        if len(same) != 1:
            raise ValueError(f"attribute prompt needs exactly one {prompt.get('shape')!r}, scene has {len(same)}")
        return [colour_of(same[0].shape, same[0].colour)]
    if kind == "locate":
        obj = _object(scene, prompt, "colour", "shape")
        return [location(obj.colour, obj.shape, obj.row, obj.col)]
    if kind == "relation":
        a = _object(scene, prompt, "colour", "shape")
        b = _object(scene, prompt, "other_colour", "other_shape")
        if a is b:
            raise ValueError("relation prompt names the same object twice")
        (ar, ac), (br, bc) = a.cell, b.cell
        rels = ([] if ac == bc else ["left of" if ac < bc else "right of"]) + \
               ([] if ar == br else ["above" if ar < br else "below"])
        return [relation(a.colour, a.shape, r, b.colour, b.shape) for r in rels]
    raise ValueError(f"unknown prompt kind {kind!r}")


def ideal_response(scene: Scene, prompt: dict[str, Any]) -> str:
    return " ".join(fact_sentence(f) for f in target_facts(scene, prompt))


# ----------------------------------------------------------------------------- text-only scenes

_CORNER = {"top left", "top right", "bottom left", "bottom right"}
_NEAR_TEMPLATES = (
    ("A box holds {items}.", "box"),
    ("Picture a 3 by 3 board with {items}.", "board"),
    ("Someone drew {items}.", "drawing"),
)
_FAR_TEMPLATES = ("A bag contains {items}.", "Here is a list of toy shapes: {items}.", "The shelf has {items}.")


def _where(obj: Obj) -> str:
    name = obj.position
    if name in _CORNER:
        return f"in the {name} corner"
    if name == "center":
        return "in the middle"
    return f"on the {name}" if name in ("left", "right") else f"at the {name}"


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def scene_text_prompt(scene: Scene, prompt: dict[str, Any], relevance: str, rng: np.random.Generator) -> str:
    """The scene told in prose instead of the caption language, then the question.

    "near" keeps the positions (any prompt kind fits); "far" only lists the items, so it suits
    count and attribute questions, the plainest text-only reading tasks.
    """
    order = [scene.objects[int(i)] for i in rng.permutation(len(scene.objects))]
    if relevance == "near":
        template, container = _NEAR_TEMPLATES[int(rng.integers(len(_NEAR_TEMPLATES)))]
        items = _listing([f"a {o.size} {o.colour} {o.shape} {_where(o)}" for o in order])
        question = f"Describe the {container}." if prompt["kind"] == "describe" else prompt["question"]
        return f"{template.format(items=items)} {question}"
    if relevance == "far":
        if prompt["kind"] not in ("count", "attribute"):
            raise ValueError(f"far scene text suits count and attribute prompts, not {prompt['kind']!r}")
        template = _FAR_TEMPLATES[int(rng.integers(len(_FAR_TEMPLATES)))]
        items = _listing([f"a {o.size} {o.colour} {o.shape}" for o in order])
        return f"{template.format(items=items)} {prompt['question']}"
    raise ValueError(f"unknown relevance {relevance!r}; expected 'near' or 'far'")
