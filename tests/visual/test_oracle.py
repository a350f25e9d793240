"""The gold oracle: ideal answers score 1, and every named error does what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.visual.generator import ERROR_TYPES, forced_response, generate_response
from pipelines.visual.language import parse_facts
from pipelines.visual.oracle import grade
from pipelines.visual.prompts import PROMPT_KINDS, ideal_response, make_prompt, target_facts
from pipelines.visual.scene import Obj, Scene, sample_scene

SCENE = Scene((Obj("circle", "red", "large", "top", "left"), Obj("square", "blue", "small", "middle", "center"),
               Obj("triangle", "yellow", "small", "bottom", "right"), Obj("circle", "green", "large", "top", "right")))
HALLUCINATIONS = ("absent_object", "wrong_colour", "wrong_count", "wrong_relation")


def _cases(n_scenes: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n_scenes):
        scene = sample_scene(rng, 1, 5)
        for kind in PROMPT_KINDS:
            yield scene, make_prompt(scene, kind, rng), rng


def test_ideal_response_is_perfect():
    for scene, prompt, _ in _cases():
        g = grade(scene, prompt, ideal_response(scene, prompt))
        assert (g["hallucination_rate"], g["recall"], g["gold"], g["n_unparsed"]) == (0.0, 1.0, 1.0, 0)


def test_correct_generator_output_is_perfect_but_varies_in_form():
    texts = set()
    for scene, prompt, rng in _cases(10):
        text, errors = generate_response(scene, prompt, rng, {})
        assert errors == ["correct"] and grade(scene, prompt, text)["gold"] == 1.0
        if prompt["kind"] == "describe" and len(scene.objects) > 2:
            texts.add(text == ideal_response(scene, prompt))
    assert texts == {True, False}


@pytest.mark.parametrize("error_type", HALLUCINATIONS)
def test_hallucination_types_state_something_false(error_type):
    for scene, prompt, rng in _cases():
        text, errors = forced_response(scene, prompt, rng, error_type)
        g = grade(scene, prompt, text)
        assert errors == [error_type]
        assert g["n_false"] >= 1 and g["hallucination_rate"] > 0 and g["gold"] < 1, (prompt, text)
        if error_type in ("absent_object", "wrong_count") and prompt["kind"] != "count":
            assert g["recall"] == 1.0  # added claims, nothing asked for is lost


def test_omission_lowers_recall_without_false_claims():
    for scene, prompt, rng in _cases():
        text, errors = forced_response(scene, prompt, rng, "omission")
        g = grade(scene, prompt, text)
        assert errors == ["omission"] and g["n_facts"] >= 1
        assert g["hallucination_rate"] == 0.0 and g["recall"] < 1.0, (prompt, text)
        if prompt["kind"] != "describe":  # the stand-in fact does not mention the asked shape
            assert all(f.shape != prompt.get("shape") for f in parse_facts(text))


def test_generator_is_deterministic_and_checks_probs():
    probs = {name: 0.4 for name in ERROR_TYPES}
    scene, prompt = SCENE, {"kind": "describe", "question": "Describe the image."}
    runs = [[generate_response(scene, prompt, rng, probs) for _ in range(20)]
            for rng in (np.random.default_rng(9), np.random.default_rng(9))]
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="typo"):
        generate_response(scene, prompt, np.random.default_rng(0), {"typo": 0.1})
    with pytest.raises(ValueError, match="omission"):
        generate_response(scene, prompt, np.random.default_rng(0), {"omission": 1.5})


def test_grade_counts_unasked_false_facts_and_repeats_once():
    prompt = {"kind": "count", "question": "How many circles are there?", "shape": "circle"}
    g = grade(SCENE, prompt, "There are 2 circles. There are 2 circles. The triangle is red. Hello there.")
    assert (g["n_facts"], g["n_false"], g["n_unparsed"]) == (2, 1, 1)
    assert g["hallucination_rate"] == 0.5 and g["recall"] == 1.0 and g["gold"] == 0.5
    assert g["false_facts"] == ["The triangle is red."]
    empty = grade(SCENE, prompt, "I cannot tell.")
    assert (empty["hallucination_rate"], empty["recall"], empty["gold"]) == (0.0, 0.0, 0.0)


def test_targets_by_prompt_kind():
    describe = target_facts(SCENE, {"kind": "describe", "question": "Describe the image."})
    assert len(describe) == 2 * len(SCENE.objects)
    relation = {"kind": "relation", "shape": "square", "colour": "blue", "other_shape": "circle",
                "other_colour": "green"}
    assert ideal_response(SCENE, relation) == ("The blue square is left of the green circle. "
                                               "The blue square is below the green circle.")
    with pytest.raises(ValueError, match="circle"):  # two circles: no attribute question about "the circle"
        target_facts(SCENE, {"kind": "attribute", "shape": "circle"})
    with pytest.raises(ValueError, match="not in the scene"):
        target_facts(SCENE, {"kind": "locate", "shape": "circle", "colour": "blue"})


def test_prompt_fallbacks():
    rng = np.random.default_rng(0)
    single = Scene((Obj("circle", "red", "large", "top", "left"),))
    assert make_prompt(single, "relation", rng)["kind"] == "locate"
    pair = Scene((Obj("circle", "red", "large", "top", "left"), Obj("circle", "blue", "large", "top", "right")))
    assert make_prompt(pair, "attribute", rng)["kind"] == "locate"
    assert make_prompt(SCENE, "attribute", rng)["question"] in ("What colour is the square?",
                                                                "What colour is the triangle?")
