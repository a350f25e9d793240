"""The templated language: every sentence parses back to its fact, and truth matches the scene."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.visual.language import (Fact, caption, colour_of, count, exists, fact_holds, fact_sentence, location,
                                       parse_facts, parse_report, relation, true_facts)
from pipelines.visual.scene import COLOURS, COLS, ROWS, SHAPES, SIZES, Obj, Scene, sample_scene

SCENE = Scene((Obj("circle", "red", "large", "top", "left"), Obj("square", "blue", "small", "middle", "center"),
               Obj("circle", "green", "small", "bottom", "right")))


def _all_facts() -> list[Fact]:
    facts = [count(s, n) for s in SHAPES for n in range(5)] + [colour_of(s, c) for s in SHAPES for c in COLOURS]
    for c in COLOURS:
        for s in SHAPES:
            facts += [exists(c, s)] + [exists(c, s, z) for z in SIZES]
            facts += [location(c, s, r, k) for r in ROWS for k in COLS]
            facts += [relation(c, s, "below", "red", "circle")] if (c, s) != ("red", "circle") else []
    return facts


@pytest.mark.parametrize("number_words", [False, True])
def test_every_sentence_parses_back(number_words):
    for fact in _all_facts():
        assert parse_facts(fact_sentence(fact, number_words=number_words)) == [fact], fact


def test_canonical_sentences():
    assert fact_sentence(exists("red", "circle", "large")) == "There is a large red circle."
    assert fact_sentence(count("triangle", 0)) == "There are no triangles."
    assert fact_sentence(count("circle", 1)) == "There is 1 circle."
    assert fact_sentence(count("circle", 2)) == "There are 2 circles."
    assert fact_sentence(location("red", "circle", "middle", "center")) == "The red circle is at the center."
    assert fact_sentence(relation("red", "circle", "left of", "blue", "square")) == \
        "The red circle is left of the blue square."
    assert fact_sentence(colour_of("triangle", "blue")) == "The triangle is blue."


def test_parser_is_tolerant_and_counts_what_it_cannot_read():
    text = ("  THERE IS A  Red Circle!  the red circle is in the Top-Left corner;The blue square is to the "
            "left of the green circle. There are two circles\nI think so. The circle is purple.")
    report = parse_report(text)
    assert report.facts == (exists("red", "circle"), location("red", "circle", "top", "left"),
                            relation("blue", "square", "left of", "green", "circle"), count("circle", 2))
    assert report.n_unparsed == 2
    assert parse_facts("The red circle is at the middle left.") == [location("red", "circle", "middle", "left")]
    assert parse_facts("") == []
    assert parse_facts("There's a blue square. There're 3 squares.") == [exists("blue", "square"), count("square", 3)]


def test_a_sized_subject_also_claims_existence():
    assert parse_facts("The small red circle is at the top left.") == [
        location("red", "circle", "top", "left"), exists("red", "circle", "small")]


def test_truth_follows_the_scene():
    assert fact_holds(SCENE, exists("red", "circle", "large"))
    assert not fact_holds(SCENE, exists("red", "circle", "small"))
    assert fact_holds(SCENE, count("circle", 2)) and fact_holds(SCENE, count("triangle", 0))
    assert not fact_holds(SCENE, count("circle", 3))
    assert fact_holds(SCENE, relation("red", "circle", "left of", "blue", "square"))
    assert fact_holds(SCENE, relation("red", "circle", "above", "green", "circle"))
    assert not fact_holds(SCENE, relation("blue", "square", "left of", "red", "circle"))
    assert fact_holds(SCENE, colour_of("square", "blue"))
    assert not fact_holds(SCENE, colour_of("circle", "red"))  # two circles: "the circle" is not definite
    assert not fact_holds(SCENE, location("yellow", "circle", "top", "left"))  # absent object


def test_same_row_or_column_has_no_strict_relation():
    scene = Scene((Obj("circle", "red", "large", "top", "left"), Obj("square", "blue", "small", "top", "right")))
    assert not fact_holds(scene, relation("red", "circle", "above", "blue", "square"))
    assert not fact_holds(scene, relation("red", "circle", "below", "blue", "square"))


def test_caption_states_every_object_and_only_true_facts():
    rng = np.random.default_rng(3)
    for _ in range(30):
        scene = sample_scene(rng, 1, 6)
        facts = parse_facts(caption(scene))
        assert len(facts) == 2 * len(scene.objects)
        assert set(facts) <= true_facts(scene)


def test_invalid_facts_are_rejected():
    with pytest.raises(ValueError):
        Fact("exists", "circle")  # no colour
    with pytest.raises(ValueError):
        Fact("count", "circle", count=2, colour="red")
    with pytest.raises(ValueError):
        relation("red", "circle", "left of", "red", "circle")
    assert sorted([count("circle", 2), exists("red", "circle")]) == [exists("red", "circle"), count("circle", 2)]
