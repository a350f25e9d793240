"""Draw scenes as small RGB images, and read/write image files.

Drawing is pure numpy so a scene always renders to the same pixels, whatever imaging library
is installed; PIL is used only for the PNG file format.

Real images are user data: `check_image` refuses a file over `MAX_IMAGE_BYTES` or
`MAX_IMAGE_PIXELS` (before decoding it, so a decompression bomb costs nothing) and one PIL cannot
decode to the end (not an image, truncated). `load_image` applies the same limits.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from pipelines.atomic import write_bytes_atomic

from .scene import Scene

BACKGROUND = (240, 240, 232)
RGB = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 220), "yellow": (236, 200, 20)}
SIZE_FRACTION = {"large": 0.8, "small": 0.45}  # side (or diameter) as a share of the cell side
NOISE_AMPLITUDE = 6  # +- grey levels when an rng is given: enough to break exact pixel matching
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a real photo is a few MB; 64 MiB is far beyond any dataset image
MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels (8000 x 5000), under PIL's own bomb warning (89 M)
_VERIFY_SIZE = (64, 64)  # JPEG is decoded at a reduced scale to check it: every byte is still read


class ImageFileError(ValueError):
    """An image file that is too large or cannot be decoded; the message says which and why."""


def _mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, half: float) -> np.ndarray:
    """Pixels whose centres fall inside a circle, square or upward triangle of half-extent `half`."""
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex at the top, base at the bottom, width growing linearly
        return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, image_size: int = 48, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return the scene as uint8 [image_size, image_size, 3]; noise is added only when rng is given."""
    if image_size < 9:
        raise ValueError(f"image_size must be at least 9, got {image_size}")
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    centres = np.arange(image_size) + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    cell = image_size / 3
    for obj in scene.objects:
        row, col = obj.cell
        half = SIZE_FRACTION[obj.size] * cell / 2
        image[_mask(obj.shape, xs, ys, (col + 0.5) * cell, (row + 0.5) * cell, half)] = RGB[obj.colour]
    if rng is not None:
        noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=image.shape)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 array as PNG atomically, so no reader sees half a file."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {array.dtype} {list(array.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


def _open_within_limits(path: str | os.PathLike):
    """PIL's lazy handle on `path`, after the byte and pixel limits (the header is all it has read)."""
    from PIL import Image

    size = os.path.getsize(path)
    if size > MAX_IMAGE_BYTES:
        raise ImageFileError(f"image is {size} bytes, over the limit of {MAX_IMAGE_BYTES}")
    img = Image.open(path)
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise ImageFileError(f"image is {width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS}")
    return img


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a decodable image within the limits; ImageFileError otherwise."""
    try:
        with _open_within_limits(path) as img:
            size = img.size
            img.draft("RGB", _VERIFY_SIZE)
            img.load()
            return size
    except ImageFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, struct.error...)
        raise ImageFileError(f"cannot decode the image ({type(exc).__name__}: {exc})") from exc


def load_image(path: str | os.PathLike, image_size: int) -> np.ndarray:
    """Read any PIL-readable image as uint8 [S, S, 3]; transparency is composited onto white."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with _open_within_limits(path) as img:
            img.load()
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            if img.mode in ("RGBA", "LA", "PA"):
                rgba = img.convert("RGBA")
                img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img.alpha_composite(rgba)
            img = img.convert("RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
