"""Rewards from the visual reward models: an image, a prompt and a response in, a scalar reward out.

Request: prompt, response, and the image as `image` (a path to any file PIL reads) or
`image_base64` (the file's bytes, base64-encoded, for clients that do not share a disk with the
server); neither means a text-only sample. The image is read at the model's own resolution
exactly as the stages read the world's images (`render.load_image`).
"""
from __future__ import annotations

import base64
import binascii
import io
import tempfile
from pathlib import Path

import numpy as np

from pipelines.serving import Column, Family, register, text


def _pixels(row: dict, size: int) -> np.ndarray | None:
    from pipelines.visual.render import load_image

    path, encoded = text(row, "image", required=False), text(row, "image_base64", required=False)
    if path:
        return load_image(path, size)
    if not encoded:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"image_base64 is not valid base64: {exc}") from exc
    with tempfile.NamedTemporaryFile(suffix=".img") as fh:  # load_image checks format and size limits on a file
        fh.write(raw)
        fh.flush()
        return load_image(fh.name, size)


class VisualPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.models.reward.visual import load_visual_rm
        from pipelines.models.vlm.llava import checkpoint_image_size

        self.model, self.size = load_visual_rm(Path(model_dir)), checkpoint_image_size(Path(model_dir))

    def predict(self, rows, params) -> list[dict]:
        pixels = {i: _pixels(r, self.size) for i, r in enumerate(rows)}
        records = [{"prompt": text(r, "prompt"), "response": text(r, "response"), "image": str(i) if pixels[i] is not None else ""}
                   for i, r in enumerate(rows)]
        rewards = self.model.rewards(records, lambda rec: pixels[int(rec["image"])] if rec["image"] else None,
                                     batch_size=int(params["batch_size"]))
        return [{"reward": float(r)} for r in rewards.tolist()]


def example(_model_dir: Path) -> list[dict]:
    """A red square with a blue bar, sent inline, and the same question without an image."""
    from PIL import Image

    img = Image.new("RGB", (32, 32), (220, 30, 30))
    img.paste((30, 30, 220), (0, 24, 32, 32))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return [{"prompt": "What colour is the square?", "response": "The square is red.", "image_base64": encoded},
            {"prompt": "What colour is the square?", "response": "The square is red."}]


register(Family("visual", VisualPredictor,
                (Column("prompt", "string"), Column("response", "string"), Column("image", "string", False),
                 Column("image_base64", "string", False)),
                (Column("reward", "double"),), example,
                "from pipelines.models.reward.visual import load_visual_rm; load_visual_rm('{path}')",
                params={"batch_size": 32}, requirements=("pillow",)))
