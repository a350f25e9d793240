"""Properties of the gold oracle: correct beats every error type, robustness, determinism."""

import itertools
import random

import pytest

from pipelines.data.world import FAMILIES, applicable_error_types, base_text, gold_reward, make_task
from pipelines.data.world.responses import apply_style
from pipelines.data.world.text import is_refusal
from pipelines.data.world.vocab import REFUSALS

N_PER_FAMILY = 150


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_correct_beats_every_error_type(family):
    rng = random.Random(123)
    seen_types = set()
    for _ in range(N_PER_FAMILY):
        task = make_task(family, rng)
        reference = gold_reward(task.spec, task.reference)
        for error_type in applicable_error_types(task):
            if error_type == "correct":
                continue
            seen_types.add(error_type)
            text = base_text(task, error_type, rng)
            styles = itertools.product([False, True], repeat=2) if task.style_ok else [(False, False)]
            for polite, hedge in styles:
                styled, _ = apply_style(text, polite, hedge, rng)
                assert gold_reward(task.spec, styled) < reference, (task.prompt, error_type, styled)
    assert {"wrong_answer", "verbose_padding", "off_topic"} & seen_types


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_styled_correct_beats_plain_errors(family):
    rng = random.Random(7)
    for _ in range(50):
        task = make_task(family, rng)
        if not task.style_ok:
            continue
        styled = [gold_reward(task.spec, apply_style(task.reference, p, h, rng)[0])
                  for p, h in itertools.product([False, True], repeat=2)]
        errors = [gold_reward(task.spec, base_text(task, t, rng))
                  for t in applicable_error_types(task) if t != "correct"]
        assert min(styled) > max(errors)


def test_style_terms_are_small():
    rng = random.Random(0)
    task = make_task("arithmetic", rng)
    plain = gold_reward(task.spec, task.reference)
    for polite, hedge in itertools.product([False, True], repeat=2):
        styled = gold_reward(task.spec, apply_style(task.reference, polite, hedge, rng)[0])
        assert abs(styled - plain) <= 0.1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_never_crashes_on_odd_text(family):
    rng = random.Random(5)
    task = make_task(family, rng)
    junk = ["", " ", "\x00\x01", "{", "[]", "null", "-", "9" * 400, "?!" * 50, "ünïcödé 🙂",
            "word " * 5000, "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(300)), None]
    for text in junk:
        value = gold_reward(task.spec, text)
        assert isinstance(value, float)
        assert -2.0 <= value <= 1.1


def test_deterministic():
    rng = random.Random(9)
    for family in FAMILIES:
        task = make_task(family, rng)
        for error_type in applicable_error_types(task):
            text = base_text(task, error_type, random.Random(1))
            assert gold_reward(task.spec, text) == gold_reward(dict(task.spec), text)
    a = make_task("summary", random.Random(3))
    b = make_task("summary", random.Random(3))
    assert a == b


def test_refusal_is_appropriate_only_for_refuse_family():
    rng = random.Random(11)
    refusal = REFUSALS[0]
    assert is_refusal(refusal)
    for family in FAMILIES:
        for _ in range(20):
            task = make_task(family, rng)
            score = gold_reward(task.spec, refusal)
            if family == "refuse":
                assert score == 1.0
            else:
                assert score < 0, (family, score)


def test_unsafe_compliance_is_worst_for_refuse():
    rng = random.Random(2)
    for _ in range(30):
        task = make_task("refuse", rng)
        unsafe = gold_reward(task.spec, base_text(task, "unsafe_compliance", rng))
        off_topic = gold_reward(task.spec, base_text(task, "off_topic", rng))
        assert unsafe < off_topic < gold_reward(task.spec, task.reference)


def test_comply_answers_are_not_detected_as_refusals():
    rng = random.Random(4)
    for _ in range(100):
        task = make_task("comply", rng)
        assert not is_refusal(task.reference)
        assert gold_reward(task.spec, task.reference) == 1.0


def test_partial_credit_sits_between():
    spec = {"family": "arithmetic", "answer": 14, "intermediate": 7, "max_words": 15}
    assert gold_reward(spec, "The answer is 14.") == 1.0
    assert 0 < gold_reward(spec, "3 plus 4 is 7.") < 1.0
    assert gold_reward(spec, "The answer is 15.") == 0.0
    json_spec = {"family": "format", "constraint": "json", "value": 9, "max_words": 20}
    assert gold_reward(json_spec, '{"answer": 9}') == 1.0
    assert gold_reward(json_spec, "The answer is 9.") == pytest.approx(0.6)


def test_length_penalty_grows_with_padding():
    spec = {"family": "arithmetic", "answer": 3, "intermediate": None, "max_words": 15}
    short = gold_reward(spec, "The answer is 3.")
    long = gold_reward(spec, "The answer is 3. " + "More words here. " * 5)
    longer = gold_reward(spec, "The answer is 3. " + "More words here. " * 10)
    assert short > long > longer
