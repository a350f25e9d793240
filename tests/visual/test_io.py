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
