"""Loading real visual preference pairs: the schema, and errors that name file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.visual.io import load_visual_pairs
from pipelines.visual.render import save_png


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


@pytest.fixture
def data(tmp_path):
    save_png(np.full((8, 8, 3), 200, dtype=np.uint8), tmp_path / "imgs" / "a.png")
    return tmp_path


def test_loads_both_prompt_keys_and_resolves_images(data):
    path = _write(data / "pairs.jsonl", [
        {"image": "imgs/a.png", "prompt": "Describe.", "chosen": "A cat.", "rejected": "A dog."},
        {"id": "x7", "image": "imgs/a.png", "question": "What?", "chosen": "c", "rejected": "r", "family": "hall"},
    ])
    first, second = load_visual_pairs(path)
    assert first == {"id": "pairs-1", "kind": "visual", "prompt": "Describe.", "chosen": "A cat.", "rejected": "A dog.",
                     "gold_chosen": None, "gold_rejected": None, "label_agrees_with_gold": None,
                     "family": "real", "image": str(data / "imgs" / "a.png"), "spec": {}}
    assert (second["id"], second["prompt"], second["family"]) == ("x7", "What?", "hall")


def test_image_root_overrides_the_file_directory(data, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = _write(elsewhere / "p.jsonl", [{"image": "a.png", "prompt": "p", "chosen": "c", "rejected": "r"}])
    assert load_visual_pairs(path, image_root=data / "imgs")[0]["image"] == str(data / "imgs" / "a.png")


@pytest.mark.parametrize("line, error, needle", [
    ('{"image": "imgs/a.png", "prompt": ', ValueError, "invalid JSON"),
    ({"prompt": "p", "chosen": "c", "rejected": "r"}, ValueError, "'image'"),
    ({"image": "imgs/a.png", "chosen": "c", "rejected": "r"}, ValueError, "'prompt' or 'question'"),
    ({"image": "imgs/a.png", "prompt": "p", "rejected": "r"}, ValueError, "'chosen'"),
    ({"image": "imgs/a.png", "prompt": "  ", "chosen": "c", "rejected": "r"}, ValueError, "'prompt' is empty"),
    ({"image": "imgs/a.png", "prompt": "p", "chosen": "c", "rejected": 3}, ValueError, "'rejected' must be a string"),
    ({"image": "imgs/a.png", "prompt": "p", "chosen": "c", "rejected": "c"}, ValueError, "identical"),
    ({"image": "imgs/missing.png", "prompt": "p", "chosen": "c", "rejected": "r"}, FileNotFoundError, "missing.png"),
])
def test_errors_name_file_and_line(data, line, error, needle):
    good = {"image": "imgs/a.png", "prompt": "p", "chosen": "c", "rejected": "r"}
    path = _write(data / "bad.jsonl", [good, "", line])
    with pytest.raises(error, match=needle) as info:
        load_visual_pairs(path)
    assert "bad.jsonl" in str(info.value) and "line 3" in str(info.value)


def test_missing_and_empty_files(data):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_visual_pairs(data / "nope.jsonl")
    with pytest.raises(ValueError, match="no records"):
        load_visual_pairs(_write(data / "empty.jsonl", []))


# ---------------------------------------------------------------- paths that escape, images that are not

GOOD = {"prompt": "p", "chosen": "c", "rejected": "r"}


def _one_pair(data, image: str, name: str = "pairs.jsonl"):
    return _write(data / name, [{**GOOD, "image": "imgs/a.png"}, {**GOOD, "image": image}])


@pytest.mark.parametrize("image", ["../../../../../etc/hostname", "imgs/../../outside.png", "/etc/hostname"])
def test_paths_escaping_the_image_root_are_refused(data, image):
    """The issue's `../../../../../etc/hostname` was accepted and recorded as /etc/hostname. Breaks if a
    `..` path or an absolute path outside the root loads, or the error loses file, line or field."""
    save_png(np.zeros((4, 4, 3), dtype=np.uint8), data.parent / "outside.png")
    with pytest.raises(ValueError, match=r"pairs\.jsonl: line 2: field 'image': .*outside the image root") as info:
        load_visual_pairs(_one_pair(data, image))
    assert "\n" not in str(info.value)


def test_symlink_pointing_out_of_the_root_is_refused(data, tmp_path_factory):
    """A symlink inside the root resolving outside it is an escape too; one resolving inside is fine.
    Breaks if containment is checked on the unresolved path."""
    outside = tmp_path_factory.mktemp("outside")
    save_png(np.zeros((4, 4, 3), dtype=np.uint8), outside / "secret.png")
    (data / "imgs" / "link.png").symlink_to(outside / "secret.png")
    (data / "imgs" / "alias.png").symlink_to(data / "imgs" / "a.png")
    with pytest.raises(ValueError, match=r"line 2: field 'image': 'imgs/link\.png' resolves to .*secret\.png, outside"):
        load_visual_pairs(_one_pair(data, "imgs/link.png"))
    assert load_visual_pairs(_one_pair(data, "imgs/alias.png"))[1]["image"] == str(data / "imgs" / "a.png")
    assert load_visual_pairs(_one_pair(data, str(data / "imgs" / "a.png")))[1]["image"] == str(data / "imgs" / "a.png")


def test_unreadable_images_are_refused_at_load(data):
    """A text file named .png and a truncated PNG fail here, naming line and field, not in a training
    stage later. Breaks if images are only checked for existence."""
    (data / "imgs" / "text.png").write_text("hostname\n")
    whole = (data / "imgs" / "a.png").read_bytes()
    (data / "imgs" / "cut.png").write_bytes(whole[: len(whole) // 2])
    for name in ("text.png", "cut.png"):
        with pytest.raises(ValueError, match=rf"pairs\.jsonl: line 2: field 'image': .*{name}: cannot decode the image"):
            load_visual_pairs(_one_pair(data, f"imgs/{name}"))


def test_oversized_images_are_refused_before_decoding(data, monkeypatch):
    """The pixel limit (read from the header) and the byte limit both refuse, naming line and field; the
    loader used by training stages applies them too. Breaks if either limit is not enforced."""
    from pipelines.visual import render

    save_png(np.zeros((10, 10, 3), dtype=np.uint8), data / "imgs" / "big.png")
    monkeypatch.setattr(render, "MAX_IMAGE_PIXELS", 99)
    with pytest.raises(ValueError, match=r"line 2: field 'image': .*big\.png: image is 10x10 pixels, over the limit of 99"):
        load_visual_pairs(_one_pair(data, "imgs/big.png"))
    with pytest.raises(ValueError, match="over the limit of 99"):
        render.load_image(data / "imgs" / "big.png", 8)
    monkeypatch.setattr(render, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(render, "MAX_IMAGE_BYTES", 20)
    with pytest.raises(ValueError, match=r"line 1: field 'image': .*a\.png: image is \d+ bytes, over the limit of 20"):
        load_visual_pairs(_one_pair(data, "imgs/big.png"))


def test_non_utf8_pairs_file_names_its_line(data):
    """Bytes that are not UTF-8 name the file and line like every other JSONL reader. Breaks if the
    visual loader reads with Python's default decoding errors."""
    path = data / "latin1.jsonl"
    path.write_bytes(b'{"image": "imgs/a.png", "prompt": "caf\xe9", "chosen": "c", "rejected": "r"}\n')
    with pytest.raises(ValueError, match=r"latin1\.jsonl: line 1: not valid UTF-8 \(byte 0xe9 at column 39\)"):
        load_visual_pairs(path)
