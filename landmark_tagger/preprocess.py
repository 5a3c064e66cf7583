"""PIL image -> model input, exactly as the bundle's ``preprocess`` section says.

Resize rule ``short-side-center-crop``: a view ``zoomZ`` takes the centred square whose side is the image's
short side divided by Z and resizes it to ``size`` x ``size`` (one resampling step from the source pixels);
``center`` is ``zoom1``; ``flip`` is ``center`` mirrored left-right. Pixels are scaled to [0, 1], then
``(x - mean) / std`` per channel, laid out NCHW.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

RESIZE_RULES = ("short-side-center-crop",)
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_VIEW = re.compile(r"^(center|flip|zoom(\d+(?:\.\d+)?)(-flip)?)$")


@dataclass(frozen=True)
class Preprocess:
    """How a photo becomes model input (the ``preprocess`` section of labels.json)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "short-side-center-crop"
    interpolation: str = "bilinear"
    views: tuple[str, ...] = field(default=("center",))

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "resize": self.resize,
                "interpolation": self.interpolation, "views": list(self.views)}


def parse_view(view: str) -> tuple[float, bool]:
    """``(zoom, flip)`` of a view name; raises ValueError for an unknown one."""
    m = _VIEW.match(view)
    if not m:
        raise ValueError(f"unknown view {view!r} (center, flip, zoomZ, zoomZ-flip)")
    if view == "center":
        return 1.0, False
    if view == "flip":
        return 1.0, True
    zoom = float(m.group(2))
    if not 1.0 <= zoom <= 4.0:
        raise ValueError(f"view {view!r}: zoom must be in [1, 4]")
    return zoom, bool(m.group(3))


def min_decode_side(spec: Preprocess) -> int:
    """The short side the decoder must deliver so that no view upsamples (the largest zoom sets it)."""
    zoom = max(parse_view(v)[0] for v in spec.views)
    return int(math.ceil(spec.size * zoom))


def render_view(img: Image.Image, spec: Preprocess, view: str) -> Image.Image:
    """One view as a ``size`` x ``size`` RGB image."""
    zoom, flip = parse_view(view)
    w, h = img.size
    side = min(w, h) / zoom
    x0, y0 = (w - side) / 2, (h - side) / 2
    out = img.resize((spec.size, spec.size), INTERPOLATIONS[spec.interpolation], box=(x0, y0, x0 + side, y0 + side))
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


@functools.lru_cache(maxsize=8)
def _lut(mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """(3, 256) float32: ``(v / 255 - mean) / std`` of every byte value ``v`` per channel, computed with the float32
    operations, in the order, of the plain formula, so that a lookup gives exactly its result."""
    v = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(((v - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).T)


def to_input(views: np.ndarray, spec: Preprocess) -> np.ndarray:
    """(V, 3, S, S) float32 model input from (V, S, S, 3) uint8 views (:func:`prepare_views`): ``(x / 255 - mean) /
    std`` per channel, by table lookup (the same float32 values as the formula, half the time)."""
    lut = _lut(tuple(spec.mean), tuple(spec.std))
    chw = np.ascontiguousarray(np.asarray(views, dtype=np.uint8).transpose(0, 3, 1, 2))
    out = np.empty(chw.shape, np.float32)
    for c in range(3):
        np.take(lut[c], chw[:, c], out=out[:, c])
    return out


def normalize(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """(3, S, S) float32 from an RGB image already at the model size."""
    return to_input(np.asarray(img.convert("RGB") if img.mode != "RGB" else img)[None], spec)[0]


def prepare_views(img: Image.Image, spec: Preprocess, views: tuple[str, ...] | None = None) -> np.ndarray:
    """The views of one photo as (V, S, S, 3) uint8 (a quarter of the float input's bytes, for sending it to
    another process); :func:`to_input` turns them into model input."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    views = spec.views if views is None else views
    return np.stack([np.asarray(render_view(img, spec, v), dtype=np.uint8) for v in views])


def prepare(img: Image.Image, spec: Preprocess, views: tuple[str, ...] | None = None) -> np.ndarray:
    """Model input for one photo.

    Args:
        img: RGB image, already EXIF-oriented (``decode.decode_for_model`` delivers that).
        spec: the bundle's preprocessing.
        views: override the bundle's test-time views (default: ``spec.views``).

    Returns:
        (V, 3, S, S) float32, one row per view.
    """
    return to_input(prepare_views(img, spec, views), spec)
