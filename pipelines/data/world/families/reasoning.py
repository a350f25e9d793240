"""Families with a numeric answer: arithmetic, list_ops, counting (OOD) and unit_convert (adaptation)."""

from __future__ import annotations

import random

from ..vocab import ANIMALS, COLORS, OBJECTS
from .base import Task

_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}


def _near_miss(answer: int, rng: random.Random, avoid: set[int]) -> int:
    """A wrong number close to the answer (the typical arithmetic slip)."""
    while True:
        candidate = answer + rng.choice([-3, -2, -1, 1, 2, 3, 10])
        if candidate != answer and candidate not in avoid and candidate >= 0:
            return candidate


def make_arithmetic(rng: random.Random) -> Task:
    """One- or two-step integer arithmetic; two-step prompts allow partial credit for the first step."""
    a, b = rng.randint(2, 12), rng.randint(1, 12)
    op = rng.choice(list(_OPS))
    if op == "minus" and b > a:
        a, b = b, a
    if op == "times":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    first = _OPS[op](a, b)
    if rng.random() < 0.5:
        prompt = rng.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Tell me {a} {op} {b}."]).format(
            a=a, op=op, b=b)
        answer, intermediate = first, None
        partial: list[str] = []
    else:
        c = rng.randint(1, 9)
        op2 = rng.choice(["plus", "minus"])
        if op2 == "minus" and c > first:
            op2 = "plus"
        answer, intermediate = _OPS[op2](first, c), first
        prompt = f"What is {a} {op} {b}, then {op2} {c}?"
        partial = [f"{a} {op} {b} is {first}.", f"First, {a} {op} {b} is {first}."]
    spec = {"family": "arithmetic", "answer": answer, "intermediate": intermediate, "max_words": 15}
    avoid = {intermediate} if intermediate is not None else set()
    wrong = _near_miss(answer, rng, avoid)
    return Task("arithmetic", prompt, spec, f"The answer is {answer}.",
                {"wrong_answer": [f"The answer is {wrong}."], "partial_answer": partial})


def _distinct_numbers(rng: random.Random, k: int) -> list[int]:
    """k distinct numbers that are neither sorted ascending nor descending."""
    while True:
        values = rng.sample(range(1, 30), k)
        if values != sorted(values) and values != sorted(values, reverse=True):
            return values


def _join(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def make_list_ops(rng: random.Random) -> Task:
    """Sort, reverse, max or min of a short list of numbers."""
    values = _distinct_numbers(rng, rng.randint(3, 6))
    op = rng.choice(["sort", "reverse", "max", "min"])
    listed = _join(values)
    if op in ("sort", "reverse"):
        answer = sorted(values) if op == "sort" else list(reversed(values))
        prompt = (f"Sort these numbers from smallest to largest: {listed}." if op == "sort"
                  else f"Reverse this list: {listed}.")
        reference = f"The result is {_join(answer)}."
        wrong_list = sorted(values, reverse=True) if op == "sort" else values
        wrong = [f"The result is {_join(wrong_list)}."]
        half = max(1, len(answer) // 2)
        partial = [f"The result starts with {_join(answer[:half])}."]
    else:
        answer = max(values) if op == "max" else min(values)
        word = "largest" if op == "max" else "smallest"
        prompt = f"What is the {word} number in this list: {listed}?"
        reference = f"The {word} number is {answer}."
        other = rng.choice([v for v in values if v != answer])
        wrong = [f"The {word} number is {other}."]
        partial = [f"It is {answer} or maybe {other}."]
    spec = {"family": "list_ops", "op": op, "answer": answer, "max_words": 20}
    return Task("list_ops", prompt, spec, reference, {"wrong_answer": wrong, "partial_answer": partial})


def make_counting(rng: random.Random) -> Task:
    """Count letters, a letter's occurrences, or list items (held out for the OOD test)."""
    kind = rng.choice(["letters", "occurrences", "items"])
    if kind == "letters":
        word = rng.choice(ANIMALS + COLORS + OBJECTS)
        answer = len(word)
        prompt = f"How many letters are in the word {word}?"
    elif kind == "occurrences":
        word = rng.choice([w for w in ANIMALS + COLORS + OBJECTS if len(w) >= 4])
        letter = rng.choice(sorted(set(word)))
        answer = word.count(letter)
        prompt = f"How many times does the letter {letter} appear in {word}?"
    else:
        items = rng.sample(ANIMALS, rng.randint(2, 7))
        answer = len(items)
        prompt = f"How many items are in this list: {', '.join(items)}?"
    spec = {"family": "counting", "kind": kind, "answer": answer, "max_words": 15}
    wrong = _near_miss(answer, rng, set())
    return Task("counting", prompt, spec, f"There are {answer}.",
                {"wrong_answer": [f"There are {wrong}."], "partial_answer": [f"It is {answer} or {answer + 1}."]})


_CONVERSIONS = [
    ("meters", "centimeters", 100), ("kilometers", "meters", 1000), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("kilograms", "grams", 1000), ("days", "hours", 24),
    ("feet", "inches", 12), ("weeks", "days", 7), ("dollars", "cents", 100),
]


def make_unit_convert(rng: random.Random) -> Task:
    """Convert a small quantity between units (the adaptation family)."""
    src, dst, factor = rng.choice(_CONVERSIONS)
    n = rng.randint(2, 9)
    answer = n * factor
    prompt = rng.choice(["Convert {n} {src} to {dst}.", "How many {dst} are in {n} {src}?"]).format(
        n=n, src=src, dst=dst)
    wrong_factor = rng.choice([f for f in {10, 12, 24, 60, 100, 1000} if f != factor])
    spec = {"family": "unit_convert", "answer": answer, "unit": dst, "max_words": 15}
    return Task("unit_convert", prompt, spec, f"{n} {src} is {answer} {dst}.",
                {"wrong_answer": [f"{n} {src} is {n * wrong_factor} {dst}."],
                 "partial_answer": [f"It is {answer}.", f"The number is {answer}."]})
