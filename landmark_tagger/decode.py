"""Fast photo decoding for the model and for review thumbnails.

The model needs a small image (short side of a few hundred pixels), so we never decode more than that:

* JPEG: libjpeg's DCT scaling through Pillow's ``draft`` picks the smallest scale (1/8, 1/4, 1/2, 1/1) whose
  short side is still >= the requested size — decoding a 24 MP file at 1/8 scale costs a fraction of a full decode.
* RAW: the camera's embedded JPEG preview (rawpy ``extract_thumb``), itself decoded with ``draft``; a bitmap
  thumbnail counts only if it is large enough; a half-size demosaic is the last resort, used only when the file
  has no usable preview.
* PNG, TIFF through Pillow; HEIC/HEIF through pillow-heif when that optional extra is installed.

EXIF orientation is applied, so a portrait comes out taller than wide. Every way a file can fail (empty,
truncated, corrupt, not an image at all, a RAW LibRaw cannot read and without a preview, too many pixels)
raises :class:`~landmark_tagger.errors.UnsupportedImageError` with a message that says which.

The decoder is chosen by the file's first bytes where they are unambiguous (a JPEG named ``.nef`` is decoded as
the JPEG it is), otherwise by its extension. Nothing global is changed in Pillow except its decompression-bomb
limit, raised from Pillow's default (~89 MP) to :data:`MAX_PIXELS` so medium-format files and panoramas decode.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import UnsupportedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "JPEG_EXTENSIONS",
    "MAX_PIXELS",
    "RAW_EXTENSIONS",
    "decode_for_model",
    "decode_thumbnail",
    "file_kind",
]


class _Extensions(frozenset):
    """A frozenset of lower-case extensions with the leading dot (``'.nef'``), as ``Path.suffix.lower()`` gives.

    Membership also accepts any case and no dot: ``'.NEF' in RAW_EXTENSIONS`` and ``'nef' in RAW_EXTENSIONS``.
    """

    def __contains__(self, ext: object) -> bool:
        if not isinstance(ext, str):
            return False
        ext = ext.lower()
        if not ext.startswith("."):
            ext = "." + ext
        return frozenset.__contains__(self, ext)


def _exts(*names: str) -> _Extensions:
    return _Extensions("." + n for n in names)


JPEG_EXTENSIONS = _exts("jpg", "jpeg", "jpe", "jfif")
#: RAW formats LibRaw reads (and some it reads only the preview of).
RAW_EXTENSIONS = _exts(
    "nef", "nrw",  # Nikon
    "cr2", "cr3", "crw",  # Canon
    "arw", "srf", "sr2",  # Sony
    "dng",  # Adobe / Leica / Pentax / phones
    "orf",  # Olympus / OM System
    "rw2", "rwl",  # Panasonic / Leica
    "raf",  # Fujifilm
    "pef",  # Pentax
    "kdc", "dcr", "dcs", "k25",  # Kodak
    "mrw",  # Minolta
    "3fr", "fff",  # Hasselblad
    "erf",  # Epson
    "mos",  # Leaf
    "srw",  # Samsung
    "x3f",  # Sigma
    "iiq",  # Phase One
    "mef",  # Mamiya
    "raw",  # Leica / Panasonic (old)
    "rwz", "ari", "bay", "cap", "mdc", "nksc", "obm", "ptx", "pxn", "qtk", "r3d", "cine", "sti",
)
PNG_EXTENSIONS = _exts("png")
TIFF_EXTENSIONS = _exts("tif", "tiff")
HEIC_EXTENSIONS = _exts("heic", "heif", "hif")
#: Every extension ltag treats as a photo.
IMAGE_EXTENSIONS = _Extensions(JPEG_EXTENSIONS | RAW_EXTENSIONS | PNG_EXTENSIONS | TIFF_EXTENSIONS | HEIC_EXTENSIONS)

_KIND_BY_EXT: dict[str, str] = {}
for _kind, _set in (("jpeg", JPEG_EXTENSIONS), ("raw", RAW_EXTENSIONS), ("png", PNG_EXTENSIONS),
                    ("tiff", TIFF_EXTENSIONS), ("heic", HEIC_EXTENSIONS)):
    _KIND_BY_EXT.update(dict.fromkeys(_set, _kind))

#: Largest image (in pixels) ltag decodes; anything bigger is refused as a likely decompression bomb.
MAX_PIXELS = 200_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    # Pillow warns above this and raises above twice this; we raise our own clear error above MAX_PIXELS.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

#: EXIF orientation -> the transposition that displays the stored pixels upright.
_ORIENT_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),  # "Rotate 90 CW" to display
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),  # "Rotate 270 CW" (90 CCW) to display
}
#: LibRaw's ``sizes.flip`` -> EXIF orientation value.
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """``'jpeg' | 'raw' | 'png' | 'tiff' | 'heic'`` by the file's extension (any case), ``None`` if not a photo."""
    return _KIND_BY_EXT.get(os.path.splitext(os.fspath(path))[1].lower())


def read_error(e: OSError) -> UnsupportedImageError:
    """The user-facing error for a file that cannot be read (shared by decode and exif)."""
    if isinstance(e, IsADirectoryError):
        return UnsupportedImageError("is a folder, not a file")
    if isinstance(e, FileNotFoundError):
        return UnsupportedImageError("file not found (moved or deleted?)")
    if isinstance(e, PermissionError):
        return UnsupportedImageError("cannot read file: permission denied")
    return UnsupportedImageError(f"cannot read file: {e.strerror or e}")


def decode_for_model(path: str | os.PathLike[str], min_side: int, *, data: bytes | None = None) -> Image.Image:
    """Decode a photo for recognition: RGB, EXIF orientation applied, short side >= ``min_side`` when the source
    has that many pixels (otherwise as large as it is), and not much more than twice that (cheap to ship between
    processes and to resize).

    ``data``: the file's bytes when the caller has already read them (the scan hashes and decodes one buffer;
    see also :func:`file_bytes`); ``path`` then only names the file (its extension and messages). A RAW file is
    still opened by path.

    Raises:
        UnsupportedImageError: the file is empty, truncated, corrupt, not an image, or a RAW file LibRaw cannot
            read that has no usable embedded preview.
    """
    if min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    img = _decode(Path(path), min_side, preview_min_short=min_side, data=data)
    return _shrink(img, min_side)


_pre = threading.local()


@contextlib.contextmanager
def file_bytes(path: str | os.PathLike[str], data: bytes) -> Iterator[None]:
    """Within the block, decoding ``path`` (in this thread) uses ``data``, the file's bytes already in memory,
    instead of reading the file again: ``with file_bytes(p, buf): decode_for_model(p, 258)``."""
    prev = getattr(_pre, "item", None)
    _pre.item = (os.fspath(path), data)
    try:
        yield
    finally:
        _pre.item = prev


def decode_thumbnail(path: str | os.PathLike[str], max_side: int) -> Image.Image:
    """Decode a photo for a review page: RGB, oriented, long side <= ``max_side`` (as large as the source allows).

    Uses the same fast paths as :func:`decode_for_model`; a RAW preview is accepted once its short side reaches
    a quarter of ``max_side`` (at most 256 px: a review page can live with a small camera preview rather than
    wait for a demosaic). JPEGs are DCT-scaled to the smallest scale whose long side still reaches ``max_side``.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    img = _decode(Path(path), 1, preview_min_short=max(1, min(max_side // 4, 256)), want_long=max_side)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return img


# --------------------------------------------------------------------------------------------------- dispatch


def _decode(path: Path, want_short: int, *, preview_min_short: int, want_long: int = 0,
            data: bytes | None = None) -> Image.Image:
    """Dispatch on the file's magic bytes, then on its extension.

    JPEG, PNG, TIFF and HEIC files are read into memory in one go (or taken from ``data``); RAW files are opened
    by path so that LibRaw reads only the parts it needs (the preview of a 25 MB NEF is a small part of it).
    """
    kind = file_kind(path)
    if data is None:
        item = getattr(_pre, "item", None)
        if item is not None and item[0] == os.fspath(path):
            data = item[1]
    try:
        if data is not None:
            head = bytes(data[:16])
            if not head:
                raise UnsupportedImageError("empty file (0 bytes)")
            is_jpeg = head.startswith(b"\xff\xd8\xff")
        else:
            with open(path, "rb") as f:
                head = f.read(16)
                if not head:
                    raise UnsupportedImageError("empty file (0 bytes)")
                is_jpeg = head.startswith(b"\xff\xd8\xff")
                if is_jpeg or kind != "raw":
                    f.seek(0)
                    data = f.read()  # one buffer, not head + rest (a copy of the whole file)
                else:
                    data = b""
    except UnsupportedImageError:
        raise
    except OSError as e:
        raise read_error(e) from None
    if is_jpeg:
        what = "JPEG" if kind in (None, "jpeg") else f"JPEG (named {path.suffix})"
        return _decode_jpeg(data, want_short, what=what, want_long=want_long)
    if kind == "raw":
        return _decode_raw(path, head, want_short, preview_min_short=preview_min_short, want_long=want_long)
    if kind == "heic" or (head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"hevc")):
        _register_heif()
    if kind == "jpeg":
        raise UnsupportedImageError(_not_jpeg_message(head))
    return _decode_pillow(data, want_short, what=(kind or "image").upper(), want_long=want_long)


def _not_jpeg_message(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "not a JPEG: the file is a PNG with a JPEG extension"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "not a JPEG: the file is a TIFF (or TIFF-based RAW) with a JPEG extension"
    if _looks_like_text(head):
        return "not an image: the file holds text, not JPEG data"
    return "not a JPEG: the file does not start with a JPEG marker (corrupt or another format)"


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head[:16] if b < 128)


# ------------------------------------------------------------------------------------------------ JPEG & co


def _decode_jpeg(data: bytes, want_short: int, *, what: str = "JPEG", want_long: int = 0) -> Image.Image:
    try:
        # MPO files open through the JPEG factory: "MPO" is no open format (naming it raised KeyError on bad data)
        im = Image.open(io.BytesIO(data), formats=("JPEG",))
    except Image.DecompressionBombError as e:
        raise UnsupportedImageError(f"{what} is too large to decode safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if "truncated" in str(e).lower():
            raise UnsupportedImageError(f"truncated {what}: the file ends inside its header ({e})") from None
        raise UnsupportedImageError(f"corrupt {what}: cannot read its header ({e})") from None
    with im:
        _check_pixels(im, what)
        orientation = _exif_orientation(im)
        try:
            # DCT scaling: the smallest of 1/8, 1/4, 1/2, 1/1 that still has the wanted size.
            im.draft("RGB", _draft_request(im.size, want_short, want_long))
            im.load()
        except OSError as e:
            raise UnsupportedImageError(_jpeg_load_message(what, e)) from None
        except (SyntaxError, ValueError, MemoryError) as e:  # Pillow's "broken" signals
            raise UnsupportedImageError(f"corrupt {what}: {e}") from None
        out = im.convert("RGB")  # a copy, detached from the file
    return _orient(out, orientation)


def _jpeg_load_message(what: str, e: OSError) -> str:
    text = str(e)
    if "truncated" in text:
        return f"truncated {what}: the image data ends early ({text})"
    return f"corrupt {what}: {text}"


def _decode_pillow(data: bytes, want_short: int, *, what: str, want_long: int = 0) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise UnsupportedImageError(f"{what} is too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        head = data[:16]
        if _looks_like_text(head):
            raise UnsupportedImageError(f"not an image: the file holds text, not {what} data") from None
        raise UnsupportedImageError(f"not a readable {what}: unknown or corrupt format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnsupportedImageError(f"corrupt {what}: cannot read its header ({e})") from None
    with im:
        _check_pixels(im, what)
        orientation = _exif_orientation(im)
        try:
            if im.format in ("JPEG", "MPO"):
                im.draft("RGB", _draft_request(im.size, want_short, want_long))
            im.load()
            out = _to_rgb(im)
        except OSError as e:
            raise UnsupportedImageError(_jpeg_load_message(what, e)) from None
        except (SyntaxError, ValueError, MemoryError) as e:
            raise UnsupportedImageError(f"corrupt {what}: {e}") from None
    return _orient(out, orientation)


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy of any Pillow mode: 16-bit greyscale is scaled (not clipped), alpha is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode in ("I", "F"):
        import numpy as np

        a = np.asarray(im, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") else max(float(a.max()), 1.0)
        return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def _exif_orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) from the already parsed header; 1 when absent or invalid."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        return 1
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 1
    return value if value in _ORIENT_TRANSPOSE else 1


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    for op in _ORIENT_TRANSPOSE.get(orientation, ()):
        im = im.transpose(op)
    return im


def _check_pixels(im: Image.Image, what: str) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise UnsupportedImageError(f"corrupt {what}: invalid size {w}x{h}")
    if w * h > MAX_PIXELS:
        raise UnsupportedImageError(
            f"{what} has {w}x{h} = {w * h / 1e6:.0f} MP, above ltag's limit of {MAX_PIXELS / 1e6:.0f} MP "
            "(refused as a possible decompression bomb)"
        )


def _draft_request(size: tuple[int, int], want_short: int, want_long: int) -> tuple[int, int]:
    """The (w, h) to ask ``draft`` for: both sides >= ``want_short``, or the long side >= ``want_long``."""
    if want_long:
        w, h = size
        long_side = max(w, h, 1)
        return max(1, -(-want_long * w // long_side)), max(1, -(-want_long * h // long_side))
    return want_short, want_short


def _shrink(im: Image.Image, want_short: int, want_long: int = 0) -> Image.Image:
    """Box-reduce by an integer factor while the short side stays >= ``want_short`` (or the long side >=
    ``want_long``); no-op for small images."""
    factor = max(im.size) // want_long if want_long else min(im.size) // want_short
    if factor >= 2:
        im = im.reduce(factor)
    return im


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if _heif_registered:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        raise UnsupportedImageError(
            "HEIC/HEIF needs the optional pillow-heif package: pip install 'landmark-tagger[heic]'"
        ) from None
    register_heif_opener()
    _heif_registered = True


# ------------------------------------------------------------------------------------------------------- RAW


def _decode_raw(path: Path, head: bytes, want_short: int, *, preview_min_short: int,
                want_long: int = 0) -> Image.Image:
    """Embedded preview first; half-size demosaic only when there is no usable preview."""
    import rawpy

    try:
        raw = rawpy.imread(os.fspath(path))
    except rawpy.LibRawFileUnsupportedError:
        if _looks_like_text(head):
            raise UnsupportedImageError("not an image: the file holds text, not RAW data") from None
        raise UnsupportedImageError("not a RAW file LibRaw can read (unknown, unsupported or corrupt format)") from None
    except (rawpy.LibRawError, OSError, ValueError) as e:
        if _looks_like_text(head):
            raise UnsupportedImageError("not an image: the file holds text, not RAW data") from None
        raise UnsupportedImageError(f"truncated or corrupt RAW: LibRaw cannot open it ({_libraw_reason(e)})") from None
    with raw:
        try:
            flip = int(raw.sizes.flip)
        except Exception:
            flip = 0
        preview_problem = "it has no embedded preview"
        try:
            thumb = raw.extract_thumb()
        except rawpy.LibRawNoThumbnailError:
            thumb = None
        except (rawpy.LibRawError, OSError, ValueError) as e:
            thumb = None
            preview_problem = f"its embedded preview is unreadable ({_libraw_reason(e)})"
        if thumb is not None:
            img, preview_problem = _preview_image(thumb, want_short, flip, preview_min_short, want_long)
            if img is not None:
                return img
        # Last resort: demosaic at half size (LibRaw applies the file's flip itself).
        try:
            with _libraw_stderr_silenced():
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        except rawpy.LibRawFileUnsupportedError as e:
            raise UnsupportedImageError(
                f"LibRaw cannot decode this RAW's image data ({_libraw_reason(e)}) and {preview_problem}"
            ) from None
        except (rawpy.LibRawError, OSError, ValueError, MemoryError) as e:
            raise UnsupportedImageError(
                f"truncated or corrupt RAW: its image data cannot be decoded ({_libraw_reason(e)}) "
                f"and {preview_problem}"
            ) from None
    img = Image.fromarray(rgb, "RGB")
    return _shrink(img, want_short, want_long)


def _preview_image(thumb: Any, want_short: int, flip: int, min_short: int,
                   want_long: int = 0) -> tuple[Image.Image | None, str]:
    """Decode rawpy's thumbnail if it is usable: ``(image, '')`` or ``(None, why not)``."""
    import rawpy

    raw_orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(flip, 1)
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            im = Image.open(io.BytesIO(thumb.data), formats=("JPEG",))
        except Exception as e:
            return None, f"its embedded JPEG preview is unreadable ({e})"
        with im:
            w, h = im.size
            if min(w, h) < min_short:
                return None, f"its embedded preview is only {w}x{h}"
            try:
                _check_pixels(im, "embedded preview")
                has_tag = 0x0112 in im.getexif()
            except UnsupportedImageError as e:
                return None, str(e)
            except Exception:
                has_tag = False
            # The preview's own orientation tag wins; most previews (NEF, CR2) have none: use the RAW's.
            orientation = _exif_orientation(im) if has_tag else raw_orientation
            try:
                im.draft("RGB", _draft_request(im.size, want_short, want_long))
                im.load()
                out = im.convert("RGB")
            except Exception as e:
                return None, f"its embedded JPEG preview is truncated or corrupt ({e})"
        return _orient(out, orientation), ""
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        arr = thumb.data
        h, w = arr.shape[:2]
        if min(w, h) < min_short:
            return None, f"its embedded preview is only {w}x{h}"
        try:
            im = Image.fromarray(arr).convert("RGB")
        except Exception as e:
            return None, f"its embedded bitmap preview is unreadable ({e})"
        return _shrink(_orient(im, raw_orientation), want_short, want_long), ""
    return None, "its embedded preview has an unknown format"


class _libraw_stderr_silenced:
    """LibRaw prints its own "FILE: Unexpected end of file" straight to file descriptor 2 while it unpacks a
    truncated RAW; the same problem reaches the user as this file's error line, so the raw C message (with no
    prefix, before the summary, on every rescan) is dropped: fd 2 points at /dev/null for the call only."""

    def __enter__(self) -> None:
        import sys

        self.saved = None
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no fd 2 (embedded use): nothing to silence
            if self.saved is not None:
                os.close(self.saved)
            self.saved = None

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)


def _libraw_reason(e: BaseException) -> str:
    text = e.args[0] if e.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
