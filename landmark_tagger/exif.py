"""Capture facts from a photo's EXIF: date, camera, lens, GPS, orientation, size.

Read with exifread (``details=False``: no maker notes, header only — about a millisecond per file), for JPEG and
TIFF-based RAW files (NEF, CR2, ARW, DNG, PEF, ORF, ...), and whatever else exifread recognises (PNG, HEIC, ...).
Broken values are common in real archives — ``0000:00:00 00:00:00`` dates, ``0/0`` GPS rationals, GPS at
(0, 0), padded or duplicated maker names — and each becomes ``None`` (or a cleaned value), never an exception.
Only a file that cannot be read at all raises :class:`~landmark_tagger.errors.UnsupportedImageError`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["PhotoFacts", "camera_display_name", "parse_exif_datetime", "read_facts"]

# exifread logs "File format not recognized" etc. as warnings; a file without EXIF is normal, not news.
# A NullHandler alone does not stop them reaching the root logger (the CLI's: "WARNING exifread: File format not
# recognized." under `ltag learn`), so its warnings are dropped; its errors still come through.
logging.getLogger("exifread").addHandler(logging.NullHandler())
logging.getLogger("exifread").setLevel(logging.ERROR)


@dataclass(frozen=True)
class PhotoFacts:
    """What the file says about the shot. Every field is ``None`` when unknown or invalid.

    ``taken_at`` is local camera time, ISO ``YYYY-MM-DDTHH:MM:SS`` (no time zone: EXIF rarely has one).
    ``camera_make``/``camera_model`` are the file's strings, whitespace-trimmed; ``camera`` is the display name
    (``'Nikon D90'``). ``width``/``height`` are the stored pixel dimensions, before orientation is applied.
    """

    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    camera: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    orientation: int | None = None
    width: int | None = None
    height: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_facts(path: str | os.PathLike[str]) -> PhotoFacts:
    """Read the capture facts of one photo.

    Raises:
        UnsupportedImageError: the file cannot be opened or read (missing, a folder, no permission).
    """
    from .decode import file_kind, read_error

    kind = file_kind(path)
    try:
        with open(path, "rb") as f:
            tags = _exif_tags(f)
            size = _pixel_size(f, path, kind)
    except OSError as e:
        raise read_error(e) from None
    return facts_from_tags(tags, size)


def facts_from_tags(tags: dict[str, Any], size: tuple[int, int] | None = None) -> PhotoFacts:
    """Build :class:`PhotoFacts` from an exifread tag dict (``details=False`` keys such as ``'EXIF LensModel'``)."""
    make = _clean_text(_first(tags, "Image Make"))
    model = _clean_text(_first(tags, "Image Model"))
    lat, lon, alt = _gps(tags)
    width, height = size if size else _exif_size(tags)
    return PhotoFacts(
        taken_at=_taken_at(tags),
        camera_make=make,
        camera_model=model,
        camera=camera_display_name(make, model),
        lens=_lens(tags),
        gps_lat=lat,
        gps_lon=lon,
        gps_alt=alt,
        orientation=_orientation(tags),
        width=width,
        height=height,
    )


# ---------------------------------------------------------------------------------------------- reading


def _exif_tags(f: Any) -> dict[str, Any]:
    import exifread

    try:
        return exifread.process_file(f, details=False, extract_thumbnail=False, strict=False)
    except Exception:  # exifread on a broken header can raise anything (struct, index, value, unicode errors)
        return {}


def _pixel_size(f: Any, path: str | os.PathLike[str], kind: str | None) -> tuple[int, int] | None:
    """Stored pixel dimensions from the image header (Pillow's lazy open, or LibRaw for RAW files)."""
    if kind == "raw":
        f.seek(0)
        if f.read(3) == b"\xff\xd8\xff":  # a JPEG with a RAW name
            kind = "jpeg"
        else:
            try:
                import rawpy

                with rawpy.imread(os.fspath(path)) as raw:
                    s = raw.sizes
                    w, h = int(s.width), int(s.height)
                    return (w, h) if w > 0 and h > 0 else None
            except Exception:
                return None
    try:
        from PIL import Image

        f.seek(0)
        with Image.open(f) as im:
            w, h = im.size
        return (w, h) if w > 0 and h > 0 else None
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------- values


def _first(tags: dict[str, Any], *keys: str) -> Any:
    """The value of the first key present (exifread IfdTag -> its values)."""
    for key in keys:
        tag = tags.get(key)
        if tag is not None:
            return getattr(tag, "values", tag)
    return None


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return None
    text = str(value).replace("\x00", " ")
    text = " ".join(text.split())
    if not text or set(text) <= set("-?. 0") or text.lower() in ("unknown", "none", "n/a"):
        return None
    return text


_DT_RE = re.compile(r"^\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?)?")


def parse_exif_datetime(value: Any) -> str | None:
    """``'2023:09:01 17:20:51'`` -> ``'2023-09-01T17:20:51'``; ``None`` for blank, zero or impossible dates."""
    text = _clean_text(value)
    if not text:
        return None
    m = _DT_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss = (int(g) if g is not None else 0 for g in m.groups())
    if hh == 24 and mm == 0 and ss == 0:  # a few cameras write midnight as 24:00:00
        hh = 23
        mm = ss = 59
    if ss == 60:  # leap second
        ss = 59
    if not 1800 <= y <= 2200:
        return None
    try:
        return datetime(y, mo, d, hh, mm, ss).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def _taken_at(tags: dict[str, Any]) -> str | None:
    for key in ("EXIF DateTimeOriginal", "Image DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime"):
        value = parse_exif_datetime(_first(tags, key))
        if value:
            return value
    return None


def _orientation(tags: dict[str, Any]) -> int | None:
    value = _first(tags, "Image Orientation")
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 8 else None


def _int(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        v = int(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if v > 0 else None


def _exif_size(tags: dict[str, Any]) -> tuple[int | None, int | None]:
    w = _int(_first(tags, "EXIF ExifImageWidth"))
    h = _int(_first(tags, "EXIF ExifImageLength"))
    return (w, h) if w and h else (None, None)


def _lens(tags: dict[str, Any]) -> str | None:
    """EXIF LensModel (or the older Lens tag); maker-note lens fields are not read (they need details=True)."""
    return _clean_text(_first(tags, "EXIF LensModel", "Image LensModel", "EXIF Lens", "Image Lens"))


# -------------------------------------------------------------------------------------------------- camera

# Maker strings as cameras write them -> the brand as people say it.
_BRANDS: dict[str, str] = {
    "nikon corporation": "Nikon",
    "nikon": "Nikon",
    "canon": "Canon",
    "sony": "Sony",
    "fujifilm": "Fujifilm",
    "fuji photo film co., ltd.": "Fujifilm",
    "olympus imaging corp.": "Olympus",
    "olympus corporation": "Olympus",
    "olympus optical co.,ltd": "Olympus",
    "olympus": "Olympus",
    "om digital solutions": "OM System",
    "panasonic": "Panasonic",
    "pentax corporation": "Pentax",
    "pentax": "Pentax",
    "asahi optical co.,ltd": "Pentax",
    "ricoh imaging company, ltd.": "Ricoh",
    "ricoh": "Ricoh",
    "samsung": "Samsung",
    "samsung techwin": "Samsung",
    "eastman kodak company": "Kodak",
    "kodak": "Kodak",
    "leica camera ag": "Leica",
    "leica": "Leica",
    "hasselblad": "Hasselblad",
    "sigma": "Sigma",
    "minolta co., ltd.": "Minolta",
    "konica minolta camera, inc.": "Konica Minolta",
    "konica minolta": "Konica Minolta",
    "apple": "Apple",
    "google": "Google",
    "huawei": "Huawei",
    "xiaomi": "Xiaomi",
    "oneplus": "OnePlus",
    "lg electronics": "LG",
    "motorola": "Motorola",
    "htc": "HTC",
    "dji": "DJI",
    "gopro": "GoPro",
    "phase one": "Phase One",
    "phase one a/s": "Phase One",
    "casio computer co.,ltd.": "Casio",
    "casio": "Casio",
}
# A model string may name a brand different from Make (Ricoh-made 'PENTAX K-3 II'); these words count.
_MODEL_BRANDS = {"nikon": "Nikon", "canon": "Canon", "pentax": "Pentax", "kodak": "Kodak", "sony": "Sony",
                 "olympus": "Olympus", "samsung": "Samsung", "leica": "Leica", "fujifilm": "Fujifilm",
                 "minolta": "Minolta", "hasselblad": "Hasselblad", "sigma": "Sigma", "ricoh": "Ricoh",
                 "panasonic": "Panasonic", "casio": "Casio", "apple": "Apple", "huawei": "Huawei"}


def _brand(make: str) -> str:
    key = make.lower().strip(" .,")
    if key in _BRANDS:
        return _BRANDS[key]
    if make.lower() + "." in _BRANDS:
        return _BRANDS[make.lower() + "."]
    first = key.split()[0] if key else key
    if first in _BRANDS and len(first) > 2:
        return _BRANDS[first]
    # Unknown maker: keep it, but not in shouting capitals ('ACME CAMERA CO.' -> 'Acme Camera Co.').
    return make.title() if make.isupper() and len(make) > 3 else make


def camera_display_name(make: str | None, model: str | None) -> str | None:
    """One readable camera name without the maker twice.

    >>> camera_display_name('Canon', 'Canon EOS 5D Mark III')
    'Canon EOS 5D Mark III'
    >>> camera_display_name('NIKON CORPORATION', 'NIKON D90')
    'Nikon D90'
    >>> camera_display_name('RICOH IMAGING COMPANY, LTD.', 'PENTAX K-3 II')
    'Pentax K-3 II'
    """
    make = _clean_text(make)
    model = _clean_text(model)
    if not make and not model:
        return None
    if not model:
        return _brand(make or "")
    brand = _brand(make) if make else None
    words = model.split()
    first = words[0].lower()
    if first in _MODEL_BRANDS and len(words) > 1:
        # The model starts with a brand word: that is the brand shown ('PENTAX K-3 II' by Ricoh -> Pentax).
        brand = _MODEL_BRANDS[first]
        rest = " ".join(words[1:])
    elif make and model.lower().startswith(make.lower()) and len(model) > len(make):
        rest = model[len(make):].strip()
    else:
        rest = model
    if not brand:
        return rest
    if rest.lower().startswith(brand.lower() + " "):
        rest = rest[len(brand) + 1:]
    return f"{brand} {rest}" if rest else brand


# ----------------------------------------------------------------------------------------------------- GPS


def _ratio(value: Any, *, zero_over_zero: float | None = None) -> float | None:
    """A float from an exifread Ratio/int; ``x/0`` is invalid (``None``), ``0/0`` gives ``zero_over_zero``."""
    num = getattr(value, "_numerator", None)
    den = getattr(value, "_denominator", None)
    if num is None or den is None:
        num = getattr(value, "numerator", value)
        den = getattr(value, "denominator", 1)
    try:
        num = float(num)
        den = float(den)
    except (TypeError, ValueError):
        return None
    if den == 0:
        return zero_over_zero if num == 0 else None
    v = num / den
    return v if math.isfinite(v) else None


def _dms(values: Any) -> float | None:
    """Degrees, minutes, seconds (or fewer parts) -> decimal degrees; ``None`` when a part is invalid."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not 1 <= len(values) <= 3:
        return None
    deg = _ratio(values[0])
    if deg is None:
        return None
    total = deg
    sign = -1.0 if deg < 0 else 1.0
    for part, div in zip(values[1:], (60.0, 3600.0), strict=False):
        v = _ratio(part, zero_over_zero=0.0)  # 0/0 seconds (Nikon D5000 and others): "no seconds"
        if v is None or v < 0 or v >= 60 + 1e-6:
            return None
        total += sign * v / div
    return total


def _ref(tags: dict[str, Any], key: str) -> str | None:
    value = _clean_text(_first(tags, key))
    return value[0].upper() if value else None


def _gps(tags: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    lat = _dms(_first(tags, "GPS GPSLatitude"))
    lon = _dms(_first(tags, "GPS GPSLongitude"))
    if lat is None or lon is None:
        return None, None, None
    # A missing or garbled reference keeps the value's own sign (north / east when positive).
    if _ref(tags, "GPS GPSLatitudeRef") == "S":
        lat = -abs(lat)
    elif _ref(tags, "GPS GPSLatitudeRef") == "N":
        lat = abs(lat)
    if _ref(tags, "GPS GPSLongitudeRef") == "W":
        lon = -abs(lon)
    elif _ref(tags, "GPS GPSLongitudeRef") == "E":
        lon = abs(lon)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None, None, None
    if abs(lat) < 1e-6 and abs(lon) < 1e-6:  # "null island": a receiver with no fix writes zeros
        return None, None, None
    alt_values = _first(tags, "GPS GPSAltitude")
    if isinstance(alt_values, (list, tuple)):
        alt_values = alt_values[0] if alt_values else None
    alt = _ratio(alt_values) if alt_values is not None else None
    if alt is not None:
        ref = _first(tags, "GPS GPSAltitudeRef")
        if isinstance(ref, (list, tuple)):
            ref = ref[0] if ref else None
        if ref in (1, b"\x01", "1"):
            alt = -abs(alt)
        if not -12_000.0 <= alt <= 100_000.0:  # deeper than the ocean or higher than planes fly: garbage
            alt = None
    return round(lat, 7), round(lon, 7), (round(alt, 2) if alt is not None else None)
