"""A small templated English for facts about scenes, its parser, and the truth of each fact.

Sentences (canonical form first; parsing is case-insensitive and ignores extra spaces, commas
and quotes):

    exists    "There is a large red circle."  (size optional: "There is a red circle.")
    count     "There are 2 circles." / "There is 1 circle." / "There are no circles."
    location  "The red circle is at the top left."      (position names: see scene.py)
    relation  "The red circle is left of the blue square."  (left of, right of, above, below)
    colour    "The triangle is blue."

A subject with a size ("The large red circle is ...") also asserts that a large red circle
exists, so it yields that exists fact too: a wrong size cannot hide inside another sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering

from .scene import COLOURS, COLS, POSITIONS, ROWS, SHAPES, SIZES, Scene, position_name

FACT_KINDS = ("exists", "count", "location", "relation", "colour")
RELATIONS = ("left of", "right of", "above", "below")
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FIELDS = ("colour", "size", "row", "col", "count", "relation", "other_colour", "other_shape")
_REQUIRED = {
    "exists": {"colour"},
    "count": {"count"},
    "location": {"colour", "row", "col"},
    "relation": {"colour", "relation", "other_colour", "other_shape"},
    "colour": {"colour"},
}
_OPTIONAL = {"exists": {"size"}}


@total_ordering
@dataclass(frozen=True)
class Fact:
    """One checkable claim; fields a kind does not use stay None (enforced, so equal claims are equal)."""

    kind: str
    shape: str
    colour: str | None = None
    size: str | None = None
    row: str | None = None
    col: str | None = None
    count: int | None = None
    relation: str | None = None
    other_colour: str | None = None
    other_shape: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FACT_KINDS:
            raise ValueError(f"unknown fact kind {self.kind!r}")
        allowed = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "row": ROWS, "col": COLS,
                   "relation": RELATIONS, "other_colour": COLOURS, "other_shape": SHAPES}
        for name in ("shape",) + _FIELDS:
            value = getattr(self, name)
            used = name == "shape" or name in _REQUIRED[self.kind] | _OPTIONAL.get(self.kind, set())
            if value is None:
                if name == "shape" or name in _REQUIRED[self.kind]:
                    raise ValueError(f"{self.kind} fact needs {name}")
            elif not used:
                raise ValueError(f"{self.kind} fact has no {name}, got {value!r}")
            elif name == "count":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fact count must be an int >= 0, got {value!r}")
            elif value not in allowed[name]:
                raise ValueError(f"fact {name} {value!r} is not one of {allowed[name]}")
        if self.kind == "relation" and (self.colour, self.shape) == (self.other_colour, self.other_shape):
            raise ValueError("a relation needs two different objects")

    def sort_key(self) -> tuple:
        return (FACT_KINDS.index(self.kind), self.shape) + tuple(
            (-1, "") if getattr(self, n) is None else (0, getattr(self, n)) for n in _FIELDS)

    def __lt__(self, other: Fact) -> bool:
        if not isinstance(other, Fact):
            return NotImplemented
        return self.sort_key() < other.sort_key()


def exists(colour: str, shape: str, size: str | None = None) -> Fact:
    return Fact("exists", shape, colour=colour, size=size)


def count(shape: str, n: int) -> Fact:
    return Fact("count", shape, count=n)


def location(colour: str, shape: str, row: str, col: str) -> Fact:
    return Fact("location", shape, colour=colour, row=row, col=col)


def relation(colour: str, shape: str, rel: str, other_colour: str, other_shape: str) -> Fact:
    return Fact("relation", shape, colour=colour, relation=rel, other_colour=other_colour,
                other_shape=other_shape)


def colour_of(shape: str, colour: str) -> Fact:
    return Fact("colour", shape, colour=colour)


# ----------------------------------------------------------------------------- writing


def _plural(shape: str) -> str:
    return shape + "s"


def fact_sentence(fact: Fact, number_words: bool = False) -> str:
    """The canonical sentence for a fact; `number_words` writes counts as "two" instead of "2"."""
    if fact.kind == "exists":
        size = f"{fact.size} " if fact.size else ""
        return f"There is a {size}{fact.colour} {fact.shape}."
    if fact.kind == "count":
        n = fact.count
        if n == 0:
            return f"There are no {_plural(fact.shape)}."
        number = NUMBER_WORDS[n] if number_words and n < len(NUMBER_WORDS) else str(n)
        return f"There is {number} {fact.shape}." if n == 1 else f"There are {number} {_plural(fact.shape)}."
    if fact.kind == "location":
        return f"The {fact.colour} {fact.shape} is at the {position_name(fact.row, fact.col)}."
    if fact.kind == "relation":
        return f"The {fact.colour} {fact.shape} is {fact.relation} the {fact.other_colour} {fact.other_shape}."
    return f"The {fact.shape} is {fact.colour}."


def caption(scene: Scene) -> str:
    """The canonical full description: per object in reading order, its sized exists and location."""
    return " ".join(fact_sentence(f) for o in scene.objects
                    for f in (exists(o.colour, o.shape, o.size), location(o.colour, o.shape, o.row, o.col)))


# ----------------------------------------------------------------------------- truth


@lru_cache(maxsize=4096)
def true_facts(scene: Scene) -> frozenset[Fact]:
    """Every fact the language can state truly about the scene; any other fact is false.

    A colour fact ("The triangle is blue.") is true only when exactly one triangle is present
    and it is blue: with two triangles "the triangle" refers to nothing definite.
    """
    facts: set[Fact] = set()
    for shape in SHAPES:
        same = scene.with_shape(shape)
        facts.add(count(shape, len(same)))
        if len(same) == 1:
            facts.add(colour_of(shape, same[0].colour))
    for a in scene.objects:
        facts.update((exists(a.colour, a.shape), exists(a.colour, a.shape, a.size),
                      location(a.colour, a.shape, a.row, a.col)))
        (ar, ac) = a.cell
        for b in scene.objects:
            if b is a:
                continue
            (br, bc) = b.cell
            for rel, holds in (("left of", ac < bc), ("right of", ac > bc), ("above", ar < br), ("below", ar > br)):
                if holds:
                    facts.add(relation(a.colour, a.shape, rel, b.colour, b.shape))
    return frozenset(facts)


def fact_holds(scene: Scene, fact: Fact) -> bool:
    return fact in true_facts(scene)


# ----------------------------------------------------------------------------- parsing

_SHAPE = "(circle|square|triangle)"
_COLOUR = "(red|green|blue|yellow)"
_SIZE = "(?:(small|large) )?"
_NUMBER = r"(no|zero|\d+|" + "|".join(NUMBER_WORDS[1:]) + ")"
_PLACE = r"((?:top|middle|center|bottom|upper|lower|left|right)(?: (?:left|center|right|middle))?)"
_IN_IMAGE = "(?: in the (?:image|picture|scene))?"
_EXISTS = re.compile(rf"^there(?: is|'s) (?:a|an|one) {_SIZE}{_COLOUR} {_SHAPE}{_IN_IMAGE}$")
_COUNT = re.compile(rf"^there(?: is| are|'s|'re) {_NUMBER} {_SHAPE}s?{_IN_IMAGE}$")
_LOCATION = re.compile(
    rf"^the {_SIZE}{_COLOUR} {_SHAPE} is (?:at|in|on) the {_PLACE}(?: cell| corner| of the (?:image|picture|grid))?$")
_RELATION = re.compile(
    rf"^the {_SIZE}{_COLOUR} {_SHAPE} is (?:to the )?(left of|right of|above|below) the {_SIZE}{_COLOUR} {_SHAPE}$")
_COLOUR_FACT = re.compile(rf"^the {_SHAPE} is {_COLOUR}(?: in colou?r)?$")
_ROW_WORDS = {"top": "top", "upper": "top", "middle": "middle", "center": "middle", "bottom": "bottom", "lower": "bottom"}
_COL_WORDS = {"left": "left", "middle": "center", "center": "center", "right": "right"}


def _position(words: str) -> tuple[str, str] | None:
    """Accept canonical names plus "middle left", "top center", "upper right", "middle"..."""
    if words in POSITIONS:
        return POSITIONS[words]
    parts = words.split()
    if len(parts) == 1:
        word = parts[0]
        if word in ("middle", "center"):
            return "middle", "center"
        if word in _ROW_WORDS:
            return _ROW_WORDS[word], "center"
        return ("middle", _COL_WORDS[word]) if word in _COL_WORDS else None
    row, col = _ROW_WORDS.get(parts[0]), _COL_WORDS.get(parts[1])
    return (row, col) if row and col else None


def _number(word: str) -> int:
    if word in ("no", "zero"):
        return 0
    return int(word) if word.isdigit() else NUMBER_WORDS.index(word)


def _sized(size: str | None, colour: str, shape: str) -> list[Fact]:
    return [exists(colour, shape, size)] if size else []


def parse_sentence(sentence: str) -> list[Fact] | None:
    """Facts stated by one normalised sentence, or None when it is not in the language."""
    if m := _EXISTS.match(sentence):
        return [exists(m[2], m[3], m[1])]
    if m := _COUNT.match(sentence):
        return [count(m[2], _number(m[1]))]
    if m := _LOCATION.match(sentence):
        cell = _position(m[4])
        return None if cell is None else [location(m[2], m[3], *cell)] + _sized(m[1], m[2], m[3])
    if m := _RELATION.match(sentence):
        if (m[2], m[3]) == (m[6], m[7]):
            return None
        return ([relation(m[2], m[3], m[4], m[6], m[7])] + _sized(m[1], m[2], m[3]) + _sized(m[5], m[6], m[7]))
    if m := _COLOUR_FACT.match(sentence):
        return [colour_of(m[1], m[2])]
    return None


def _normalise(piece: str) -> str:
    piece = piece.lower().replace("-", " ").replace("centre", "center")
    piece = re.sub(r"[,\"`()\[\]*:]", " ", piece)
    return " ".join(piece.split()).strip(" '")


@dataclass(frozen=True)
class ParseReport:
    facts: tuple[Fact, ...]  # in reading order, repeats kept
    unparsed: tuple[str, ...]  # normalised sentences outside the language

    @property
    def n_unparsed(self) -> int:
        return len(self.unparsed)


def parse_report(text: str) -> ParseReport:
    """Split on sentence ends (. ! ? ; newline), read each sentence, keep what could not be read."""
    facts: list[Fact] = []
    unparsed: list[str] = []
    for piece in re.split(r"[.!?;\n]+", text):
        sentence = _normalise(piece)
        if not sentence:
            continue
        found = parse_sentence(sentence)
        if found is None:
            unparsed.append(sentence)
        else:
            facts.extend(found)
    return ParseReport(tuple(facts), tuple(unparsed))


def parse_facts(text: str) -> list[Fact]:
    return list(parse_report(text).facts)
