"""Metadata facade: read keyword state from JPEGs and XMP sidecars, rewrite them touching only keywords.

Pure functions over bytes except the ``read_*`` helpers; atomic writing and undo live in
``fsutil.py`` / ``writer.py``. See docs/safety.md for what is written and what is guaranteed untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from . import iptc, jpeg, xmp
from .errors import MetadataError, MetadataWriteError
from .keywords import KeywordEdit, KeywordPlan, KeywordState, plan

__all__ = [
    "KeywordEdit",
    "KeywordPlan",
    "KeywordState",
    "plan",
    "read_keywords",
    "read_jpeg_keywords",
    "read_jpeg_head",
    "read_sidecar_keywords",
    "rewrite_jpeg",
    "rewrite_sidecar",
    "jpeg_header_end",
]

SIDECAR_SUFFIXES = {".xmp"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def jpeg_header_end(data: bytes) -> int:
    """Offset of the first SOS marker; ``data[jpeg_header_end(data):]`` is never changed by ltag."""
    return jpeg.jpeg_header_end(data)


def _state_from_doc(doc: xmp.XmpDoc | None) -> KeywordState:
    if doc is None:
        return KeywordState([], [], [], {}, [])
    return KeywordState(
        flat=xmp.get_bag(doc, xmp.NS_DC, "subject"),
        hierarchical=xmp.get_bag(doc, xmp.NS_LR, "hierarchicalSubject"),
        owned=xmp.get_bag(doc, xmp.NS_LTAG, "OwnedKeywords"),
        ltag={k: v for k, v in xmp.ltag_values(doc).items() if k not in xmp.LTAG_BAGS},
        suppressed=xmp.get_bag(doc, xmp.NS_LTAG, "SuppressedKeywords"),
    )


def read_jpeg_keywords(data: bytes) -> KeywordState:
    """Keyword state of an in-memory JPEG (XMP + IPTC).

    Raises:
        MetadataError: not a JPEG, corrupt header, or unparsable XMP/IPTC.
    """
    layout = jpeg.parse(data)
    packet = jpeg.find_xmp(data, layout)
    state = _state_from_doc(xmp.parse(packet) if packet is not None else None)
    irb = jpeg.find_photoshop(data, layout)
    if irb:
        have = set(state.flat)
        cut = {iptc.cut_keyword(k).decode("utf-8", "replace") for k in state.flat}
        for k in iptc.read_keywords(irb):
            if k not in have and k not in cut:
                state.flat.append(k)
                have.add(k)
    return state


def read_jpeg_head(f: BinaryIO, chunk: int = 1 << 16) -> bytes:
    """Read a JPEG's head -- every byte up to and including the first SOS marker -- from an open file.

    ``rewrite_jpeg`` and ``read_jpeg_keywords`` accept this head in place of the whole file; the image data
    after it never changes, so a writer can append it from the original (``fsutil.atomic_write(...,
    tail_from=(fd, len(head)))``) instead of reading it into memory.

    Raises:
        MetadataError: not a JPEG, or the file ends before its image data.
    """
    buf = b""
    while True:
        block = f.read(chunk)
        buf += block
        n = jpeg.head_length(buf) if len(buf) >= 4 or not block else None
        if n is not None:
            return buf[:n]
        if not block:
            jpeg.parse(buf)  # raises the precise error
            raise MetadataError("truncated JPEG: no image data (SOS) found")


def read_sidecar_keywords(data: bytes) -> KeywordState:
    """Keyword state of an XMP sidecar's bytes. Raises MetadataError if unparsable."""
    return _state_from_doc(xmp.parse(data))


def read_keywords(path: str | Path) -> KeywordState:
    """Keyword state of a JPEG or an ``.xmp`` sidecar on disk.

    Raises:
        MetadataError: unreadable, unsupported or unparsable.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if p.suffix.lower() in SIDECAR_SUFFIXES:
                return read_sidecar_keywords(f.read())
            if f.read(2) != b"\xff\xd8":
                raise MetadataError(f"{p.name}: keywords can only be read from JPEG files and XMP sidecars")
            f.seek(0)
            return read_jpeg_keywords(read_jpeg_head(f))  # the image data is never needed
    except OSError as exc:
        raise MetadataError(f"cannot read {p}: {exc.strerror or exc}") from None


def _apply(doc: xmp.XmpDoc, edit: KeywordEdit) -> bool:
    ed = xmp.XmpEditor(doc)
    ed.edit_bag(xmp.NS_DC, "subject", list(edit.add_flat), list(edit.remove_flat))
    ed.edit_bag(xmp.NS_LR, "hierarchicalSubject", list(edit.add_hier), list(edit.remove_hier))
    for key, value in edit.ltag.items():
        if not _NAME.match(key):
            raise ValueError(f"not a valid XMP property name: ltag:{key!r}")
        if key in xmp.LTAG_BAGS:
            raise ValueError(f"ltag:{key} is set through KeywordEdit.owned/suppressed")
        ed.set_simple(xmp.NS_LTAG, key, None if value is None else str(value))
    if edit.owned is not None:
        ed.set_bag(xmp.NS_LTAG, "OwnedKeywords", list(edit.owned))
    if edit.suppressed is not None:
        ed.set_bag(xmp.NS_LTAG, "SuppressedKeywords", list(edit.suppressed))
    for key, value in (edit.location or {}).items():
        if key in xmp.LOCATION_PROPS and value:
            ns, name = xmp.LOCATION_PROPS[key]
            ed.set_simple(ns, name, value, only_if_empty=True)
    return ed.changed


def rewrite_jpeg(data: bytes, edit: KeywordEdit) -> bytes:
    """Return the JPEG with ``edit`` applied; only the XMP and APP13 segments differ.

    ``data`` is the whole file, or just its head (:func:`read_jpeg_head`): then so is the result, and the
    caller appends the original's bytes after the head. Returns ``data`` itself when nothing changes.

    Raises:
        MetadataError: corrupt JPEG or unparsable XMP/IPTC (nothing may be written).
        MetadataWriteError: the new XMP packet does not fit its segment.
    """
    if edit.is_empty():
        return data
    layout = jpeg.parse(data)
    packet = jpeg.find_xmp(data, layout)
    doc = xmp.parse(packet) if packet is not None else xmp.new_doc(sidecar=False)
    new_packet = None
    if _apply(doc, edit):
        new_packet = xmp.to_bytes(doc, pad_to=len(packet) if packet is not None else None, max_len=jpeg.MAX_XMP_PACKET)
        if new_packet == packet:
            new_packet = None
    irb = jpeg.find_photoshop(data, layout)
    location = {k: v for k, v in (edit.location or {}).items() if v}
    new_irb = iptc.edit_irb(irb, list(edit.add_flat), list(edit.remove_flat), location or None)
    if (
        new_irb is not None
        and irb is None
        and any(jpeg.segment_kind(s, data) == "photoshop25" for s in layout.segments)
    ):
        raise MetadataWriteError("the file keeps IPTC in an old Photoshop 2.5 block; keywords not written")
    if new_packet is None and new_irb is None:
        return data
    return jpeg.splice(data, new_packet, new_irb, layout)


def rewrite_sidecar(data: bytes | None, edit: KeywordEdit) -> bytes:
    """Return the sidecar with ``edit`` applied (``data`` None: a new sidecar).

    Raises:
        MetadataError: the existing sidecar cannot be parsed safely (leave it untouched).
    """
    doc = xmp.parse(data) if data is not None else xmp.new_doc(sidecar=True)
    changed = _apply(doc, edit)
    if data is not None and not changed:
        return data
    return xmp.to_bytes(doc, pad_to=len(data) if data is not None else None)
