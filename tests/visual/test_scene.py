"""Scenes: JSON round trip, validation that names the bad key, and sampling invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.visual.scene import POSITIONS, Obj, Scene, position_name, sample_scene


def test_position_names_are_the_nine_cells():
    assert position_name("middle", "center") == "center"
    assert position_name("middle", "left") == "left"
    assert position_name("top", "center") == "top"
    assert position_name("bottom", "right") == "bottom right"
    assert len(POSITIONS) == 9


def test_dict_round_trip_through_json():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = sample_scene(rng, 1, 6)
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_objects_are_kept_in_reading_order():
    a = Obj("circle", "red", "small", "bottom", "left")
    b = Obj("square", "blue", "large", "top", "right")
    assert Scene((a, b)) == Scene((b, a))
    assert Scene((a, b)).objects == (b, a)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["objects"][0].pop("size"), "'size'"),
    (lambda d: d["objects"][0].update(colour="purple"), "'colour'"),
    (lambda d: d["objects"][0].update(row="upper"), "'row'"),
    (lambda d: d["objects"][0].update(weight=3), "'weight'"),
    (lambda d: d.pop("objects"), "'objects'"),
    (lambda d: d.update(objects=[]), "no objects"),
])
def test_from_dict_names_the_bad_key(mutate, needle):
    d = Scene((Obj("circle", "red", "small", "top", "left"),)).to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=needle):
        Scene.from_dict(d)


def test_duplicate_cells_and_references_are_rejected():
    with pytest.raises(ValueError, match="cell"):
        Scene((Obj("circle", "red", "small", "top", "left"), Obj("square", "blue", "small", "top", "left")))
    with pytest.raises(ValueError, match="red circle"):
        Scene((Obj("circle", "red", "small", "top", "left"), Obj("circle", "red", "large", "top", "right")))


def test_sampling_is_deterministic_and_respects_bounds():
    scenes = [sample_scene(np.random.default_rng(7), 2, 5) for _ in range(2)]
    assert scenes[0] == scenes[1]
    rng = np.random.default_rng(1)
    sizes = {len(sample_scene(rng, 2, 5).objects) for _ in range(200)}
    assert sizes == {2, 3, 4, 5}
    with pytest.raises(ValueError):
        sample_scene(rng, 0, 3)
    with pytest.raises(ValueError):
        sample_scene(rng, 3, 10)
