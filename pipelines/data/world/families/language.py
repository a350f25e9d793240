"""Families about reading and instructions: context_qa, summary and format."""

from __future__ import annotations

import json
import random

from ..vocab import ANIMALS, COLORS, NAMES, OBJECTS, PLACES, VERBS
from .base import Task


def _other(rng: random.Random, pool: list[str], not_this: str) -> str:
    return rng.choice([w for w in pool if w != not_this])


def make_context_qa(rng: random.Random) -> Task:
    """A one- or two-sentence context and a question answered by one word from it."""
    name, name2 = rng.sample(NAMES, 2)
    color, color2 = rng.sample(COLORS, 2)
    obj, obj2 = rng.sample(OBJECTS, 2)
    place, animal = rng.choice(PLACES), rng.choice(ANIMALS)
    kind = rng.choice(["color", "two_people", "place", "animal"])
    if kind == "color":
        context = f"{name} has a {color} {obj} and lives in {place}."
        question, category, answer = f"What color is {name}'s {obj}?", "color", color
        reference, distractor = f"{name}'s {obj} is {color}.", color2
        wrong = f"{name}'s {obj} is {color2}."
    elif kind == "two_people":
        context = f"{name} has a {color} {obj}. {name2} has a {color2} {obj2}."
        question, category, answer = f"What color is {name2}'s {obj2}?", "color", color2
        reference, distractor = f"{name2}'s {obj2} is {color2}.", color
        wrong = f"{name2}'s {obj2} is {color}."
    elif kind == "place":
        context = f"{name} lives in {place} and has a pet {animal}."
        question, category, answer = f"Where does {name} live?", "place", place
        distractor = _other(rng, PLACES, place)
        reference, wrong = f"{name} lives in {place}.", f"{name} lives in {distractor}."
    else:
        context = f"{name} lives in {place} and has a pet {animal}."
        question, category, answer = f"What pet does {name} have?", "animal", animal
        distractor = _other(rng, ANIMALS, animal)
        reference, wrong = f"{name} has a pet {animal}.", f"{name} has a pet {distractor}."
    spec = {"family": "context_qa", "answer": answer.lower(), "category": category, "max_words": 15}
    partial = [f"It is {answer} or {distractor}.", f"Maybe {distractor} or {answer}."]
    return Task("context_qa", f"{context} {question}", spec, reference,
                {"wrong_answer": [wrong], "partial_answer": partial})


_FILLERS = [
    "The weather was calm that day.",
    "Many people walked along the street.",
    "The shops opened late in the morning.",
    "Birds sang in the tall trees.",
    "A soft wind came from the sea.",
    "The market was busy and loud.",
]
_STOP = {"the", "a", "an", "in", "on", "and", "was", "that", "from", "of", "to", "at"}


def make_summary(rng: random.Random) -> Task:
    """A short passage whose gist is the one sentence about a named person (extractive gold)."""
    name, verb, color = rng.choice(NAMES), rng.choice(VERBS), rng.choice(COLORS)
    obj, place = rng.choice(OBJECTS), rng.choice(PLACES)
    key = f"{name} {verb} a {color} {obj} in {place}."
    fillers = rng.sample(_FILLERS, 2)
    sentences = fillers[:]
    sentences.insert(rng.randint(0, 2), key)
    limit = rng.choice([15, 17, 19])
    prompt = f"Summarize in at most {limit} words: {' '.join(sentences)}"
    key_words = [name.lower(), verb, color, obj, place.lower()]
    filler_words = sorted({w.strip(".").lower() for s in fillers for w in s.split()} - _STOP - set(key_words))
    spec = {"family": "summary", "key_words": key_words, "filler_words": filler_words, "max_words": limit}
    return Task("summary", prompt, spec, key,
                {"wrong_answer": [rng.choice(fillers)],
                 "partial_answer": [f"{name} {verb} something.", f"Something happened in {place}."]})


def _format_uppercase(rng: random.Random) -> tuple[str, dict, str, list[str], list[str]]:
    color, obj = rng.choice(COLORS), rng.choice(OBJECTS)
    target = f"{color} {obj}"
    prompt = f"Write the words {target} in uppercase."
    wrong = f"{_other(rng, COLORS, color)} {obj}".upper()
    return prompt, {"constraint": "uppercase", "target": target}, target.upper(), [wrong], [target]


def _format_lowercase(rng: random.Random) -> tuple[str, dict, str, list[str], list[str]]:
    name, animal = rng.choice(NAMES), rng.choice(ANIMALS)
    target = f"{name} {animal}".lower()
    prompt = f"Write the words {target.upper()} in lowercase."
    wrong = f"{name} {_other(rng, ANIMALS, animal)}".lower()
    return prompt, {"constraint": "lowercase", "target": target}, target, [wrong], [target.upper()]


def _format_exact_words(rng: random.Random) -> tuple[str, dict, str, list[str], list[str]]:
    n = rng.randint(2, 5)
    category, pool = rng.choice([("animal", ANIMALS), ("color", COLORS)])
    prompt = f"Reply with exactly {n} words, each one {'an' if category == 'animal' else 'a'} {category}."
    other_pool = COLORS if category == "animal" else ANIMALS
    reference = " ".join(rng.sample(pool, n))
    too_many = " ".join(rng.sample(pool, n + 1))
    spec = {"constraint": "exact_words", "n": n, "category": category}
    return prompt, spec, reference, [" ".join(rng.sample(other_pool, n))], [too_many]


def _format_comma_list(rng: random.Random) -> tuple[str, dict, str, list[str], list[str]]:
    n = rng.randint(2, 4)
    category, pool = rng.choice([("animal", ANIMALS), ("color", COLORS), ("object", OBJECTS)])
    prompt = f"List {n} {'objects' if category == 'object' else category + 's'} separated by commas."
    items = rng.sample(pool, n)
    other_pool = COLORS if category != "color" else ANIMALS
    spec = {"constraint": "comma_list", "n": n, "category": category}
    return prompt, spec, ", ".join(items), [", ".join(rng.sample(other_pool, n))], [" and ".join(items)]


def _format_json(rng: random.Random) -> tuple[str, dict, str, list[str], list[str]]:
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    prompt = f"Reply with a JSON object with key answer holding {a} plus {b}."
    spec = {"constraint": "json", "value": a + b}
    wrong = json.dumps({"answer": a + b + rng.choice([-2, -1, 1, 2])})
    return prompt, spec, json.dumps({"answer": a + b}), [wrong], [f"The answer is {a + b}."]


_FORMATS = [_format_uppercase, _format_lowercase, _format_exact_words, _format_comma_list, _format_json]


def make_format(rng: random.Random) -> Task:
    """A tiny task wrapped in a machine-checkable output constraint."""
    prompt, spec, reference, wrong, violation = rng.choice(_FORMATS)(rng)
    spec = {"family": "format", **spec, "max_words": 20}
    return Task("format", prompt, spec, reference,
                {"wrong_answer": wrong, "format_violation": violation}, style_ok=False)
