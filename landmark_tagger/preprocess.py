"""PIL image -> model input, exactly as the bundle's ``preprocess`` section says.

Resize rule ``short-side-center-crop``: a view ``zoomZ`` takes the centred square whose side is the image's
short side divided by Z and resizes it to ``size`` x ``size`` (one resampling step from the source pixels);
``center`` is ``zoom1``; ``flip`` is ``center`` mirrored left-right. Pixels are scaled to [0, 1], then
``(x - mean) / std`` per channel, laid out NCHW.
"""

from __future__ import annotations

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


def normalize(img: Image.Image, spec: Preprocess) -> np.ndarray:
    """(3, S, S) float32 from an RGB image already at the model size."""
    a = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    a = (a - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def prepare(img: Image.Image, spec: Preprocess, views: tuple[str, ...] | None = None) -> np.ndarray:
    """Model input for one photo.

    Args:
        img: RGB image, already EXIF-oriented (``decode.decode_for_model`` delivers that).
        spec: the bundle's preprocessing.
        views: override the bundle's test-time views (default: ``spec.views``).

    Returns:
        (V, 3, S, S) float32, one row per view.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    views = spec.views if views is None else views
    return np.stack([normalize(render_view(img, spec, v), spec) for v in views])
