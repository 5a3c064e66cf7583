"""JPEG marker parser and splicer.

ltag only ever replaces two kinds of segment in a JPEG: the standard XMP packet (APP1
``http://ns.adobe.com/xap/1.0/``) and the Photoshop IRB (APP13 ``Photoshop 3.0``, which holds the IPTC
IIM record). Every other byte -- SOI, JFIF, the EXIF/maker-note APP1, ICC profiles, Extended XMP, MPF,
comments, tables and the entropy-coded image data with any trailer -- is copied unchanged, in order.

Pure functions over ``bytes``; no file I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import MetadataError, MetadataWriteError

XMP_SIG = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_SIG = b"http://ns.adobe.com/xmp/extension/\x00"
EXIF_SIG = b"Exif\x00"
PS_SIG = b"Photoshop 3.0\x00"
MPF_SIG = b"MPF\x00"

MAX_SEGMENT_PAYLOAD = 65533  # 0xFFFF minus the two length bytes
MAX_XMP_PACKET = 65502  # what readers (Adobe, exiftool) accept in the standard XMP segment
MAX_PS_CHUNK = MAX_SEGMENT_PAYLOAD - len(PS_SIG)

_STANDALONE = {0x01} | set(range(0xD0, 0xD8))  # TEM, RST0-7: markers without a length


@dataclass(frozen=True)
class Segment:
    """One marker segment: ``data[start:end]`` covers any fill bytes, the marker, length and payload."""

    marker: int
    start: int
    end: int
    payload_start: int

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_start : self.end]


@dataclass
class JpegLayout:
    """The header segments of a JPEG up to (not including) the first SOS, and where SOS starts."""

    segments: list[Segment]
    header_end: int

    def kind(self, seg: Segment, data: bytes) -> str:
        return segment_kind(seg, data)


def segment_kind(seg: Segment, data: bytes) -> str:
    """Classify a segment: 'exif', 'xmp', 'xmp-ext', 'photoshop', 'photoshop25', 'mpf', 'jfif' or 'other'."""
    head = data[seg.payload_start : seg.payload_start + 35]
    if seg.marker == 0xE1:
        if head.startswith(EXIF_SIG):
            return "exif"
        if head.startswith(XMP_SIG):
            return "xmp"
        if head.startswith(XMP_EXT_SIG):
            return "xmp-ext"
    elif seg.marker == 0xED and head.startswith(PS_SIG):
        return "photoshop"
    elif seg.marker == 0xED and head.startswith(b"Adobe_Photoshop2.5:"):
        return "photoshop25"
    elif seg.marker == 0xE2 and head.startswith(MPF_SIG):
        return "mpf"
    elif seg.marker == 0xE0 and head.startswith((b"JFIF\x00", b"JFXX\x00")):
        return "jfif"
    return "other"


def head_length(data: bytes) -> int | None:
    """Length of the head ``data[:n]`` up to and including the first SOS marker, or None if ``data`` is a
    prefix that ends before it (read more). Raises MetadataError for anything that is not a JPEG head."""
    try:
        return parse(data).header_end + 2
    except MetadataError as exc:
        if str(exc).startswith("truncated"):
            return None
        raise


def parse(data: bytes) -> JpegLayout:
    """Parse the marker segments before the first SOS.

    Raises:
        MetadataError: not a JPEG, or the header is truncated or garbled.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise MetadataError("not a JPEG file (no SOI marker)")
    segments: list[Segment] = []
    i = 2
    while True:
        start = i
        if i >= n:
            raise MetadataError("truncated JPEG: no image data (SOS) found")
        if data[i] != 0xFF:
            raise MetadataError(f"corrupt JPEG: expected a marker at byte {i}, found 0x{data[i]:02X}")
        while i < n and data[i] == 0xFF:  # fill bytes (B.1.1.2)
            i += 1
        if i >= n:
            raise MetadataError("truncated JPEG: ends inside a marker")
        marker = data[i]
        i += 1
        if marker == 0x00:
            raise MetadataError(f"corrupt JPEG: stuffed byte where a marker was expected at byte {i - 2}")
        if marker == 0xD8:
            raise MetadataError("corrupt JPEG: second SOI marker in the header")
        if marker == 0xD9:
            raise MetadataError("corrupt JPEG: EOI before any image data")
        if marker in _STANDALONE:
            segments.append(Segment(marker, start, i, i))
            continue
        if marker == 0xDA:
            return JpegLayout(segments, i - 2)
        if i + 2 > n:
            raise MetadataError("truncated JPEG: ends inside a segment length")
        (length,) = struct.unpack_from(">H", data, i)
        if length < 2:
            raise MetadataError(f"corrupt JPEG: segment 0x{marker:02X} has invalid length {length}")
        end = i + length
        if end > n:
            raise MetadataError(f"truncated JPEG: segment 0x{marker:02X} at byte {start} runs past the end of the file")
        segments.append(Segment(marker, start, end, i + 2))
        i = end


def jpeg_header_end(data: bytes) -> int:
    """Offset of the first SOS marker (0xFF 0xDA): everything from here on is image data ltag never changes."""
    return parse(data).header_end


def find_xmp(data: bytes, layout: JpegLayout | None = None) -> bytes | None:
    """The standard XMP packet (without the signature), or None.

    Raises:
        MetadataError: more than one standard XMP segment (ambiguous; refuse to edit).
    """
    layout = layout or parse(data)
    found = [s for s in layout.segments if segment_kind(s, data) == "xmp"]
    if not found:
        return None
    if len(found) > 1:
        raise MetadataError("JPEG has more than one standard XMP segment")
    return found[0].payload(data)[len(XMP_SIG) :]


def find_photoshop(data: bytes, layout: JpegLayout | None = None) -> bytes | None:
    """The Photoshop image resource block, joined across consecutive APP13 segments, or None."""
    layout = layout or parse(data)
    parts = [s.payload(data)[len(PS_SIG) :] for s in layout.segments if segment_kind(s, data) == "photoshop"]
    if not parts:
        return None
    return b"".join(parts)


def has_extended_xmp(data: bytes, layout: JpegLayout | None = None) -> bool:
    layout = layout or parse(data)
    return any(segment_kind(s, data) == "xmp-ext" for s in layout.segments)


def _segment_bytes(marker: int, payload: bytes) -> bytes:
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise MetadataWriteError(f"metadata segment too large ({len(payload)} bytes)")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def xmp_segment(packet: bytes) -> bytes:
    if len(packet) > MAX_XMP_PACKET:
        raise MetadataWriteError(
            f"XMP packet of {len(packet)} bytes does not fit the JPEG XMP segment ({MAX_XMP_PACKET} max)"
        )
    return _segment_bytes(0xE1, XMP_SIG + packet)


def photoshop_segments(irb: bytes) -> bytes:
    """APP13 segment(s) holding ``irb``, split into several segments when it exceeds one."""
    out = []
    for off in range(0, max(len(irb), 1), MAX_PS_CHUNK):
        out.append(_segment_bytes(0xED, PS_SIG + irb[off : off + MAX_PS_CHUNK]))
    return b"".join(out)


def _fix_mpf(payload: bytes, delta: int) -> bytes:
    """Shift the MP Entry offsets of an MPF segment by ``delta`` (images after the MPF header moved)."""
    buf = bytearray(payload)
    base = len(MPF_SIG)
    order = bytes(buf[base : base + 2])
    if order == b"II":
        e = "<"
    elif order == b"MM":
        e = ">"
    else:
        raise MetadataWriteError("cannot update the MPF (multi-picture) index: unknown byte order")
    try:
        (ifd,) = struct.unpack_from(e + "I", buf, base + 4)
        (count,) = struct.unpack_from(e + "H", buf, base + ifd)
        for k in range(count):
            tag, typ, cnt, val = struct.unpack_from(e + "HHII", buf, base + ifd + 2 + 12 * k)
            if tag != 0xB002:
                continue
            for m in range(cnt // 16):
                pos = base + val + 16 * m + 8
                (off,) = struct.unpack_from(e + "I", buf, pos)
                if off:
                    struct.pack_into(e + "I", buf, pos, off + delta)
    except struct.error as exc:
        raise MetadataWriteError("cannot update the MPF (multi-picture) index: it is truncated") from exc
    return bytes(buf)


def splice(data: bytes, xmp_packet: bytes | None, irb: bytes | None, layout: JpegLayout | None = None) -> bytes:
    """Return ``data`` with the XMP packet and/or Photoshop IRB replaced (None: leave as is).

    Existing segments are replaced where they are; missing ones are inserted after APP0 JFIF / APP1 Exif.
    Every other byte is copied unchanged. If an MPF index precedes a segment whose size changes, its
    image offsets are shifted so the secondary images are still found.
    """
    layout = layout or parse(data)
    segs = layout.segments
    kinds = [segment_kind(s, data) for s in segs]
    new_xmp = xmp_segment(xmp_packet) if xmp_packet is not None else None
    new_ps = photoshop_segments(irb) if irb is not None else None

    # insertion point for segments that do not exist yet: after leading JFIF/Exif segments
    insert_at = 0
    while insert_at < len(segs) and kinds[insert_at] in ("jfif", "exif"):
        insert_at += 1
    pieces: list[tuple[int, bytes, int]] = []  # (original position, bytes, size delta)
    have_xmp = "xmp" in kinds
    have_ps = "photoshop" in kinds
    if new_xmp is not None and not have_xmp:
        pieces.append((insert_at, new_xmp, len(new_xmp)))
    if new_ps is not None and not have_ps:
        pieces.append((insert_at, new_ps, len(new_ps)))

    ps_done = False
    # per output piece: (position key relative to the original segments, bytes, size delta)
    seg_out: list[tuple[float, bytes, int]] = []
    for k, seg in enumerate(segs):
        for at, blob, size in pieces:
            if at == k:
                seg_out.append((k - 0.5, blob, size))
        raw = data[seg.start : seg.end]
        if kinds[k] == "xmp" and new_xmp is not None:
            seg_out.append((k, new_xmp, len(new_xmp) - len(raw)))
        elif kinds[k] == "photoshop" and new_ps is not None:
            if not ps_done:  # all Photoshop segments are replaced by the new one(s) at the first one's place
                old = sum(segs[j].end - segs[j].start for j in range(len(segs)) if kinds[j] == "photoshop")
                seg_out.append((k, new_ps, len(new_ps) - old))
                ps_done = True
        else:
            seg_out.append((k, raw, 0))
    for at, blob, size in pieces:
        if at == len(segs):
            seg_out.append((len(segs) + 0.5, blob, size))

    # an MPF index addresses its images relative to itself: shift them by what grew after it
    for m in (k for k, kind in enumerate(kinds) if kind == "mpf"):
        delta = sum(d for idx, _, d in seg_out if idx > m)
        if delta:
            j = next(j for j, piece in enumerate(seg_out) if piece[0] == m)
            seg = segs[m]
            seg_out[j] = (m, data[seg.start : seg.payload_start] + _fix_mpf(seg.payload(data), delta), 0)
    out = [data[:2], *(blob for _, blob, _ in seg_out), memoryview(data)[layout.header_end :]]  # no copy
    return b"".join(out)
