"""Load real visual preference data (LLaVA / RLAIF-V style JSON lines) into the pair schema.

Each line: {"image": path, "prompt" or "question": str, "chosen": str, "rejected": str,
optional "id", "family"}. Relative image paths are resolved against `image_root` when given,
else against the JSONL file's directory; the record's "image" holds the resolved path, so it
opens from any working directory. Real pairs have no gold: gold fields and
label_agrees_with_gold are None. Every error names the file and the 1-based line.

The image root is a boundary: an image path that resolves outside it (`..`, an absolute path
elsewhere, a symlink pointing out) is refused, so a pairs file cannot make the pipeline read and
record arbitrary files. Every image is opened and decoded once here (render.check_image: at most
64 MiB and 40 megapixels, decodable to the end), so an unreadable image fails this stage, naming
its line, rather than a training stage later.
"""

from __future__ import annotations

import re

import os
from pathlib import Path
from typing import Any, Mapping

from pipelines.data.jsonl import JsonlError, iter_jsonl, write_jsonl_atomic

from .render import ImageFileError, check_image


def _text(path: Path, line: int, record: dict[str, Any], *keys: str) -> str:
    key = next((k for k in keys if k in record), None)
    if key is None:
        raise JsonlError(path, line, f"missing key {' or '.join(repr(k) for k in keys)}")
    value = record[key]
    if not isinstance(value, str):
        raise JsonlError(path, line, f"key {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise JsonlError(path, line, f"key {key!r} is empty")
    return value


IMAGE_PLACEHOLDER = re.compile(r"<image>\s*")


def _without_placeholder(text: str) -> str:
    """LLaVA-style data writes "<image>\\n" into the question; the model inserts its own image tokens."""
    return IMAGE_PLACEHOLDER.sub("", text).strip()


def _image_within(path: Path, line: int, root: Path, value: str, checked: set[Path]) -> Path:
    """The resolved image path, refused unless it is a readable image inside `root` (already resolved)."""
    if "\x00" in value:
        raise JsonlError(path, line, "field 'image': path contains a NUL byte")
    image = (root / value).resolve()
    if not image.is_relative_to(root):
        raise JsonlError(path, line, f"field 'image': {value!r} resolves to {image}, outside the image root {root} "
                                     "(set visual.real.image_root to a folder that holds every image)")
    if not image.is_file():
        raise FileNotFoundError(f"{path}: line {line}: field 'image': image file not found: {image}")
    if image not in checked:
        try:
            check_image(image)
        except ImageFileError as exc:
            raise JsonlError(path, line, f"field 'image': {image}: {exc}") from None
        checked.add(image)
    return image


def load_visual_pairs(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Read and check every line; raise on the first bad one rather than train on a partial set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"visual pairs file not found: {path}")
    root = (Path(image_root) if image_root is not None else path.parent).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image root is not a directory: {root}")
    records = []
    seen: dict[str, int] = {}
    checked: set[Path] = set()
    for line, raw in iter_jsonl(path):
        image = _image_within(path, line, root, _text(path, line, raw, "image"), checked)
        prompt = _without_placeholder(_text(path, line, raw, "prompt", "question"))
        chosen = _without_placeholder(_text(path, line, raw, "chosen"))
        rejected = _without_placeholder(_text(path, line, raw, "rejected"))
        if not prompt:
            raise JsonlError(path, line, "the prompt is only an <image> placeholder")
        if chosen == rejected:
            raise JsonlError(path, line, "'chosen' and 'rejected' are identical")
        family = _text(path, line, raw, "family") if "family" in raw else "real"
        rid = str(raw.get("id", f"{path.stem}-{line}"))
        if rid in seen:
            raise JsonlError(path, line, f"duplicate id {rid!r} (first on line {seen[rid]})")
        seen[rid] = line
        records.append({"id": str(rid), "kind": "visual", "prompt": prompt, "chosen": chosen, "rejected": rejected,
                        "gold_chosen": None, "gold_rejected": None, "label_agrees_with_gold": None,
                        "family": family, "image": str(image), "spec": {}})
    if not records:
        raise ValueError(f"{path}: no records")
    return records


REAL_FILES = {"pool": "visual_pool.jsonl", "test": "visual_test.jsonl"}  # which world file each real set replaces


class HeldOutOverlap(ValueError):
    """A real test pair shares its image and prompt with a training pair."""


def write_real_pairs(sources: Mapping[str, Path], image_root: Path | None, out_dir: Path) -> dict[str, int]:
    """Write each real pairs file (`pool`, `test`) over the world file it replaces; returns pairs per set.

    Image paths become absolute, so the records open from anywhere. A test pair that is also a
    training pair (same image and prompt) is refused: held-out pairs must be new.
    """
    loaded: dict[str, list[dict]] = {}
    for key, filename in REAL_FILES.items():
        if key not in sources:
            continue
        records = load_visual_pairs(sources[key], image_root=image_root)
        for rec in records:
            rec["image"] = str(Path(rec["image"]).resolve())
        write_jsonl_atomic(records, Path(out_dir) / filename)
        loaded[key] = records
    if len(loaded) == 2:
        seen = {(r["image"], r["prompt"]) for r in loaded["pool"]}
        shared = [r["id"] for r in loaded["test"] if (r["image"], r["prompt"]) in seen]
        if shared:
            raise HeldOutOverlap(f"{len(shared)} test pairs share image and prompt with the training pool "
                                 f"(first: {shared[0]}); held-out pairs must be new")
    return {key: len(records) for key, records in loaded.items()}
