"""Rendering is deterministic and tells shapes apart; image files round-trip and fail by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.visual.render import BACKGROUND, RGB, load_image, render, save_png
from pipelines.visual.scene import Obj, Scene, sample_scene


def _one(shape: str, size: str = "large", colour: str = "red") -> Scene:
    return Scene((Obj(shape, colour, size, "middle", "center"),))


def test_render_shape_dtype_and_determinism():
    scene = sample_scene(np.random.default_rng(0), 1, 4)
    image = render(scene, 48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert np.array_equal(image, render(scene, 48))
    noisy = [render(scene, 48, np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], image)
    assert np.abs(noisy[0].astype(int) - image).max() <= 6


def test_shapes_sizes_and_cells_differ_in_pixels():
    masks = {s: np.all(render(_one(s)) == RGB["red"], axis=-1) for s in ("circle", "square", "triangle")}
    areas = {s: int(m.sum()) for s, m in masks.items()}
    assert areas["triangle"] < areas["circle"] < areas["square"]
    for a in masks:
        for b in masks:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() >= 20, (a, b)
    for shape in masks:
        assert np.all(render(_one(shape, "small")) == RGB["red"], axis=-1).sum() < areas[shape] / 2
    # the object stays inside its own (center) cell; the other cells are background
    image = render(_one("square"))
    outside = np.ones((48, 48), dtype=bool)
    outside[16:32, 16:32] = False
    assert np.all(image[outside] == BACKGROUND)


def test_png_round_trip(tmp_path):
    image = render(sample_scene(np.random.default_rng(1)), 48, np.random.default_rng(2))
    path = save_png(image, tmp_path / "sub" / "a.png")
    assert np.array_equal(load_image(path, 48), image)
    assert load_image(path, 24).shape == (24, 24, 3)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no temp file left behind


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_load_image_converts_other_modes(tmp_path, mode):
    path = tmp_path / f"img.{'png' if mode != 'L' else 'jpg'}"
    Image.fromarray(render(_one("circle"), 32)).convert(mode).save(path)
    out = load_image(path, 48)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.all(load_image(tmp_path / "clear.png", 8) == 255)


def test_load_image_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png", 48)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        load_image(tmp_path / "bad.png", 48)
    with pytest.raises(ValueError):
        save_png(np.zeros((4, 4), dtype=np.uint8), tmp_path / "x.png")
