"""Photoshop image resource blocks (APP13) and the IPTC IIM records inside resource 0x0404.

Every resource other than 0x0404 (IPTC) and 0x0425 (IPTC digest) is kept byte for byte, in order;
inside the IIM block every dataset ltag does not edit keeps its raw bytes and position. ltag edits
2:25 Keywords (repeatable), sets 1:90 Coded Character Set to UTF-8 when it writes non-ASCII text
(transcoding existing record-2 text from the IIM default, which exiftool and Lightroom read as
cp1252, so it reads the same), and fills 2:90/2:95/2:100/2:101 location fields only when absent.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import MetadataError, MetadataWriteError

IPTC_ID = 0x0404
DIGEST_ID = 0x0425
UTF8_ESC = b"\x1b%G"
KEYWORD_MAX = 64
_SIGNATURES = (b"8BIM", b"PHUT", b"AgHg", b"DCSR", b"MeSa")
# record-2 datasets that are binary, not text: never transcoded
_BINARY_2 = {0, 200, 201, 202, 150}
# location key -> (record 2 dataset, max bytes)
LOCATION_DATASETS = {"City": (90, 32), "State": (95, 32), "CountryCode": (100, 3), "Country": (101, 64)}


@dataclass
class Resource:
    sig: bytes
    rid: int
    name: bytes  # the raw padded pascal name
    data: bytes
    raw: bytes  # the complete resource bytes as found (kept when untouched)


def parse_irb(irb: bytes) -> list[Resource]:
    """Split a Photoshop IRB into resources.

    Raises:
        MetadataError: truncated or malformed resource block.
    """
    out: list[Resource] = []
    i, n = 0, len(irb)
    while i < n:
        if n - i < 12 and not irb[i:].strip(b"\x00"):
            break  # trailing zero padding
        start = i
        sig = irb[i : i + 4]
        if sig not in _SIGNATURES:
            raise MetadataError(f"corrupt Photoshop IRB: bad resource signature at byte {i}")
        if i + 7 > n:
            raise MetadataError("truncated Photoshop IRB")
        (rid,) = struct.unpack_from(">H", irb, i + 4)
        nlen = irb[i + 6]
        name_total = nlen + 1 + ((nlen + 1) & 1)
        name = irb[i + 6 : i + 6 + name_total]
        j = i + 6 + name_total
        if j + 4 > n:
            raise MetadataError("truncated Photoshop IRB")
        (size,) = struct.unpack_from(">I", irb, j)
        j += 4
        if j + size > n:
            raise MetadataError(f"truncated Photoshop IRB: resource 0x{rid:04X} runs past the end")
        data = irb[j : j + size]
        j += size + (size & 1)
        j = min(j, n)
        out.append(Resource(sig, rid, name, data, irb[start:j]))
        i = j
    return out


def build_resource(sig: bytes, rid: int, name: bytes, data: bytes) -> bytes:
    body = sig + struct.pack(">H", rid) + name + struct.pack(">I", len(data)) + data
    return body + (b"\x00" if len(data) & 1 else b"")


@dataclass
class Dataset:
    record: int
    number: int
    value: bytes
    raw: bytes


def parse_iim(block: bytes) -> list[Dataset]:
    """Split an IIM block into datasets (tolerates trailing zero padding)."""
    out: list[Dataset] = []
    i, n = 0, len(block)
    while i < n:
        if block[i] != 0x1C:
            if not block[i:].strip(b"\x00"):
                break
            raise MetadataError(f"corrupt IPTC data: bad tag marker at byte {i}")
        if i + 5 > n:
            raise MetadataError("truncated IPTC data")
        rec, num = block[i + 1], block[i + 2]
        (length,) = struct.unpack_from(">H", block, i + 3)
        j = i + 5
        if length & 0x8000:  # extended dataset: next (length & 0x7FFF) bytes hold the length
            k = length & 0x7FFF
            if k > 4 or j + k > n:
                raise MetadataError("corrupt IPTC data: bad extended length")
            length = int.from_bytes(block[j : j + k], "big")
            j += k
        if j + length > n:
            raise MetadataError("truncated IPTC data")
        out.append(Dataset(rec, num, block[j : j + length], block[i : j + length]))
        i = j + length
    return out


def make_dataset(record: int, number: int, value: bytes) -> Dataset:
    if len(value) > 0x7FFF:
        raw = bytes((0x1C, record, number)) + struct.pack(">HI", 0x8004, len(value)) + value
    else:
        raw = bytes((0x1C, record, number)) + struct.pack(">H", len(value)) + value
    return Dataset(record, number, value, raw)


def is_utf8(datasets: list[Dataset]) -> bool:
    return any(d.record == 1 and d.number == 90 and d.value == UTF8_ESC for d in datasets)


def charset(datasets: list[Dataset]) -> str | None:
    """'utf-8', 'cp1252' (no 1:90, the IIM default as exiftool reads it), or None (another charset)."""
    for d in datasets:
        if d.record == 1 and d.number == 90:
            return "utf-8" if d.value == UTF8_ESC else None
    return "cp1252"


def decode(value: bytes, cs: str | None) -> str:
    if cs == "utf-8":
        return value.decode("utf-8", "replace")
    return value.decode("cp1252", "replace") if cs == "cp1252" else value.decode("latin-1")


def cut_keyword(s: str, limit: int = KEYWORD_MAX) -> bytes:
    """UTF-8 bytes of ``s`` cut to ``limit`` bytes at a character boundary."""
    b = s.encode("utf-8")
    if len(b) <= limit:
        return b
    return b[:limit].decode("utf-8", "ignore").encode("utf-8")  # drops a character split by the cut


def read_keywords(irb: bytes) -> list[str]:
    for r in parse_irb(irb):
        if r.rid == IPTC_ID and r.sig == b"8BIM":
            ds = parse_iim(r.data)
            cs = charset(ds)
            return [decode(d.value, cs) for d in ds if d.record == 2 and d.number == 25]
    return []


def _transcode(ds: list[Dataset]) -> list[Dataset]:
    out = []
    for d in ds:
        if d.record == 2 and d.number not in _BINARY_2 and any(b >= 0x80 for b in d.value):
            out.append(make_dataset(2, d.number, d.value.decode("cp1252", "replace").encode("utf-8")))
        else:
            out.append(d)
    return out


def edit_iim(block: bytes, add: list[str], remove: list[str], location: dict[str, str] | None) -> bytes:
    """Return the IIM block with keywords added/removed and missing location fields filled."""
    ds = parse_iim(block) if block else []
    cs = charset(ds)
    location = {k: v for k, v in (location or {}).items() if k in LOCATION_DATASETS and v}
    have = {(d.record, d.number) for d in ds}
    loc_new = {k: v for k, v in location.items() if (2, LOCATION_DATASETS[k][0]) not in have}
    texts = list(add) + list(loc_new.values())
    needs_utf8 = any(ord(c) > 127 for t in texts for c in t)
    if needs_utf8 and cs != "utf-8":
        if cs is None:
            raise MetadataWriteError("IPTC uses a character set ltag cannot convert; keywords not written")
        ds = _transcode(ds)
        ds = [d for d in ds if not (d.record == 1 and d.number == 90)]
        idx = 0
        while idx < len(ds) and (ds[idx].record < 1 or (ds[idx].record == 1 and ds[idx].number < 90)):
            idx += 1
        ds.insert(idx, make_dataset(1, 90, UTF8_ESC))
        cs = "utf-8"
    enc = "utf-8" if cs == "utf-8" else "cp1252"

    def encode_kw(k: str) -> bytes:
        if enc == "utf-8":
            return cut_keyword(k)
        try:
            return k.encode("cp1252")[:KEYWORD_MAX]
        except UnicodeEncodeError:
            return b""  # cannot be present in a cp1252 block

    rm = {encode_kw(k) for k in remove} - {b""}
    ds = [d for d in ds if not (d.record == 2 and d.number == 25 and d.value in rm)]
    present = {d.value for d in ds if d.record == 2 and d.number == 25}
    new = []
    for k in add:
        v = encode_kw(k)
        if v and v not in present:
            new.append(make_dataset(2, 25, v))
            present.add(v)
    for key, val in loc_new.items():
        num, limit = LOCATION_DATASETS[key]
        new.append(make_dataset(2, num, cut_keyword(val, limit) if enc == "utf-8" else val.encode(enc)[:limit]))
    if new:
        if not any(d.record == 2 for d in ds):
            ds.append(make_dataset(2, 0, b"\x00\x04"))  # ApplicationRecordVersion 4, mandatory first
        for nd in new:
            # after the last dataset of record 2 numbered <= the new one (keywords after keywords)
            pos = None
            for i, d in enumerate(ds):
                if d.record == 2 and d.number <= nd.number:
                    pos = i + 1
                elif d.record == 2 and pos is None:
                    pos = i
            if pos is None:
                pos = next((i for i, d in enumerate(ds) if d.record > 2), len(ds))
            ds.insert(pos, nd)
    return b"".join(d.raw for d in ds)


def edit_irb(irb: bytes | None, add: list[str], remove: list[str], location: dict[str, str] | None) -> bytes | None:
    """Return the new IRB, or None when nothing changes.

    The IPTC digest (0x0425) is updated to the new MD5 if it matched the old IPTC (the last writer kept
    XMP and IPTC in sync, and so does ltag), left as is if it was already stale, and added when ltag
    creates the IPTC block.
    """
    resources = parse_irb(irb) if irb else []
    iptc = next((r for r in resources if r.rid == IPTC_ID and r.sig == b"8BIM"), None)
    old_block = iptc.data if iptc else b""
    if not add and not remove and not location:
        return None
    new_block = edit_iim(old_block, add, remove, location)
    if new_block == old_block:
        return None
    if not new_block and iptc is None:
        return None
    old_md5 = hashlib.md5(old_block).digest() if old_block else None
    new_md5 = hashlib.md5(new_block).digest()
    out: list[bytes] = []
    digest_seen = False
    for r in resources:
        if r is iptc:
            out.append(build_resource(r.sig, r.rid, r.name, new_block))
        elif r.rid == DIGEST_ID and r.sig == b"8BIM":
            digest_seen = True
            if iptc is None or (old_md5 is not None and r.data == old_md5):
                out.append(build_resource(r.sig, r.rid, r.name, new_md5))
            else:
                out.append(r.raw)
        else:
            out.append(r.raw)
    if iptc is None:
        out.append(build_resource(b"8BIM", IPTC_ID, b"\x00\x00", new_block))
        if not digest_seen:
            out.append(build_resource(b"8BIM", DIGEST_ID, b"\x00\x00", new_md5))
    return b"".join(out)
