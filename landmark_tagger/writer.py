"""Apply a keyword decision to the files of one photo, safely and undoably.

For each file of a photo group the writer picks the *target* that carries the keywords:

* a JPEG: the file itself (only its XMP/IPTC segments change; the image data is verified byte-identical
  before anything is written), or its XMP sidecar with ``--sidecar-only``;
* a RAW (never written) and a PNG/TIFF/HEIC: an XMP sidecar — Adobe style ``DSC_0001.xmp`` by default,
  darktable style ``DSC_0001.NEF.xmp`` with ``sidecar_style='darktable'``; an existing sidecar of either
  style is updated in place (merged), never duplicated.

Then, per target: read the keywords in it (:func:`metadata.read_keywords`), plan with the ownership policy
(:func:`keywords.plan`, using the catalog's owned and suppressed lists), and only if something changes:
check permission bits (read-only -> ``readonly``, reported, nothing written), **record the undo entry first**
(a ``changes`` row in state ``pending``, committed: for a JPEG only the bytes that differ — the replaced
XMP/IPTC segments — as a zlib'd delta (:func:`encode_delta`), for a sidecar its old bytes, or that it did not
exist; never a copy of the photo), replace the file atomically
(:func:`fsutil.atomic_write`), then mark the change ``applied``. A kill at any moment leaves the old or the
new file and a change record that :func:`landmark_tagger.undo.resolve_pending` settles by hash.

The writer never opens a transaction of its own: each catalog statement it runs commits at once (the
connection is in autocommit mode), so callers must not hold a transaction open while calling it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from landmark_tagger import fsutil
from landmark_tagger.catalog import Catalog, now_iso
from landmark_tagger.errors import LtagError, MetadataWriteError

log = logging.getLogger(__name__)

SIDECAR_STYLES = ("adobe", "darktable")
LANDMARK_ROOT = "Landmarks"
# ltag:* properties that alone never cause a rewrite (scan/retag/learn pass them as ``props``; they are refreshed
# whenever the file is written for another reason, and the catalog keeps the current value): a confidence that
# moved a little on a rescan must not rewrite the photo (fewer writes, backup tools stay quiet).
VOLATILE_PROPS = frozenset({"Confidence"})


def landmark_keywords(name: str | None) -> tuple[list[str], list[str]]:
    """Keywords for a recognised landmark: flat ``[name]`` and hierarchical ``['Landmarks|name']``."""
    if not name:
        return [], []
    return [name], [f"{LANDMARK_ROOT}|{name}"]


def desired_keywords(landmark: str | None, place_flat: list[str], place_hier: list[str]) -> tuple[list[str], list[str]]:
    """Everything ltag wants in a photo's keywords: landmark + place keywords, without duplicates."""
    lf, lh = landmark_keywords(landmark)
    flat = list(dict.fromkeys([*lf, *place_flat]))
    hier = list(dict.fromkeys([*lh, *place_hier]))
    return flat, hier


def split_ltag_keywords(values: list[str]) -> tuple[list[str], list[str]]:
    """The catalog's ``ltag_keywords`` column holds flat and hierarchical keywords together; hierarchical
    ones are the ones with a ``|`` (a flat keyword never has one: Lightroom uses it as the separator)."""
    return [v for v in values if "|" not in v], [v for v in values if "|" in v]


def sidecar_paths(photo: str) -> tuple[list[str], list[str]]:
    """Candidate sidecar names of ``photo``: (Adobe style ``stem.xmp``/``.XMP``, darktable ``name.xmp``/``.XMP``)."""
    stem = os.path.splitext(photo)[0]
    return [stem + ".xmp", stem + ".XMP"], [photo + ".xmp", photo + ".XMP"]


def sidecar_for(photo: str, style: str = "adobe") -> str:
    """The sidecar to update for ``photo``: an existing one of the preferred style, else an existing one of the
    other style, else a new one of the preferred style (lower-case ``.xmp``)."""
    if style not in SIDECAR_STYLES:
        raise LtagError(f"Unknown sidecar style {style!r}; use 'adobe' or 'darktable'.")
    adobe, dt = sidecar_paths(photo)
    first, second = (adobe, dt) if style == "adobe" else (dt, adobe)
    for cand in (*first, *second):
        if os.path.isfile(cand):
            return cand
    return first[0]


@dataclass
class WriteOutcome:
    """What happened to one target (a JPEG or a sidecar)."""

    photo: str  # the photo file this outcome is for
    target: str | None  # the file that carries the keywords
    status: str  # written | unchanged | readonly | failed | none (nothing to write) | dry-run
    error: str | None = None
    owned: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    flat: list[str] = field(default_factory=list)  # keywords in the target after the write (any tool)
    hier: list[str] = field(default_factory=list)
    change_id: int | None = None
    after_hash: str | None = None  # content hash of the target (set when ltag wrote it)

    @property
    def write_status(self) -> str:
        """The catalog's ``write_status`` for this outcome."""
        return {"unchanged": "written", "dry-run": "pending"}.get(self.status, self.status)

    def photo_file_columns(self, path: str) -> dict[str, object]:
        """Catalog columns to refresh when ltag rewrote the photo file ``path`` itself (not a sidecar): its new
        size, mtime and content hash, so the next scan sees it as unchanged. Empty when nothing changed there or the
        file cannot be stat'ed any more."""
        if self.status != "written" or self.target != path:
            return {}
        try:
            st = os.stat(path)
        except OSError:
            return {}
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "content_hash": self.after_hash}


_DELTA_MAGIC = b"LTD1"


_CHUNK = 1 << 16
_HASH_CHUNK = 1 << 20


def _first_diff(a: bytes, b: bytes, lo: int, hi: int) -> int:
    """First index in [lo, hi) where a and b differ (they are known to differ there): binary search on slices."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix (64 KiB slices compared with memcmp, then a binary search in the first one that
    differs): a few milliseconds for a 10 MB photo."""
    n = min(len(a), len(b))
    i = 0
    while i < n:
        j = min(i + _CHUNK, n)
        if a[i:j] != b[i:j]:
            return _first_diff(a, b, i, j)
        i = j
    return n


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most ``limit`` (so that it does not overlap the common prefix)."""
    ra, rb = len(a), len(b)
    k = 0
    while k < limit:
        step = min(_CHUNK, limit - k)
        if a[ra - k - step:ra - k] != b[rb - k - step:rb - k]:
            # find the last differing byte inside this window: binary search on the window's tails
            lo, hi = 0, step  # common tail length within the window is in [lo, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[ra - k - mid:ra - k] == b[rb - k - mid:rb - k]:
                    lo = mid
                else:
                    hi = mid
            return k + lo
        k += step
    return limit


def encode_delta(old: bytes, new: bytes) -> bytes:
    """Undo record for a file ltag rewrote: only the bytes that differ (the replaced XMP/IPTC segments), as
    ``(prefix length, suffix length, old middle)``, zlib-compressed: a few KB, never a copy of the photo.
    ``apply_delta(new, record) == old``."""
    return _delta(old, new)[0]


def _delta(old: bytes, new: bytes) -> tuple[bytes, int]:
    p = _common_prefix(old, new)
    s = _common_suffix(old, new, min(len(old), len(new)) - p)
    body = _DELTA_MAGIC + struct.pack("<QQ", p, s) + old[p:len(old) - s]
    return zlib.compress(body, 6), s


def encode_head_delta(old_head: bytes, new_head: bytes, tail_len: int) -> bytes:
    """:func:`encode_delta` of two whole files that are ``old_head``/``new_head`` followed by the same
    ``tail_len`` bytes (a JPEG's image data), computed from the heads alone."""
    p = _common_prefix(old_head, new_head)
    s = _common_suffix(old_head, new_head, min(len(old_head), len(new_head)) - p)
    body = _DELTA_MAGIC + struct.pack("<QQ", p, s + tail_len) + old_head[p:len(old_head) - s]
    return zlib.compress(body, 6)


def _file_hashes(fd: int, old_head: bytes, new_head: bytes,
                 known: tuple[int, int, str] | None = None) -> tuple[int, str, str]:
    """(size, content hash of the file, content hash of the file with ``old_head`` replaced by ``new_head``): the
    file's tail (image data) is read once, in 1 MiB preads, and fed to both hashes. ``known`` = (size, mtime_ns,
    content hash) of the file as the caller just hashed it (the scan's worker): when the open file still has that
    size and mtime, its hash is taken from there and only the new content is hashed."""
    st = os.fstat(fd)
    size = st.st_size
    h_new = fsutil.hasher_for(None)
    h_new.update(new_head)
    h_old: Any = None
    if known is None or (known[0], known[1]) != (st.st_size, st.st_mtime_ns) or not known[2]:
        h_old = fsutil.hasher_for(None)
        h_old.update(old_head)
    pos = len(old_head)
    while pos < size:
        chunk = os.pread(fd, min(_HASH_CHUNK, size - pos), pos)
        if not chunk:
            raise OSError(errno.EIO, "the file shrank while it was being read")
        if h_old is not None:
            h_old.update(chunk)
        h_new.update(chunk)
        pos += len(chunk)
    return size, h_old.hexdigest() if h_old is not None else known[2], h_new.hexdigest()  # type: ignore[index]


def apply_delta(current: bytes, record: bytes) -> bytes:
    """Rebuild the old bytes from ``current`` (what ltag wrote, or a file changed only between the prefix and
    the suffix) and a record from :func:`encode_delta`. Callers verify the result's content hash."""
    body = zlib.decompress(record)
    if body[:4] != _DELTA_MAGIC:
        raise ValueError("not an ltag delta record")
    p, s = struct.unpack("<QQ", body[4:20])
    if p + s > len(current):
        raise ValueError("the file is shorter than the recorded unchanged parts")
    return current[:p] + body[20:] + current[len(current) - s:]


def _empty_state() -> Any:
    from landmark_tagger.keywords import KeywordState

    return KeywordState(flat=[], hierarchical=[], owned=[], ltag={}, suppressed=[])


def _after(state_list: list[str], add: list[str], remove: list[str]) -> list[str]:
    rem = set(remove)
    out = [k for k in state_list if k not in rem]
    have = set(out)
    out.extend(k for k in add if k not in have)
    return out


class Writer:
    """Writes keyword decisions for one run. ``fileops`` is :class:`fsutil.FileOps` (or the no-op one for
    ``--dry-run``); ``run_id`` is the run the undo entries belong to."""

    def __init__(self, catalog: Catalog, run_id: int, fileops: fsutil.FileOps | None = None, *,
                 sidecar_style: str = "adobe", sidecar_only: bool = False, keep_mtime: bool = False,
                 iptc_location: bool = False):
        if sidecar_style not in SIDECAR_STYLES:
            raise LtagError(f"Unknown sidecar style {sidecar_style!r}; use 'adobe' or 'darktable'.")
        self.catalog = catalog
        self.run_id = run_id
        self.fileops = fileops or fsutil.FileOps()
        self.sidecar_style = sidecar_style
        self.sidecar_only = sidecar_only
        self.keep_mtime = keep_mtime
        self.iptc_location = iptc_location
        self.planned: list[tuple[str, list[str], list[str]]] = []  # dry run: (target, add, remove)

    # -- targets --------------------------------------------------------------------------------
    def target_for(self, photo: str, kind: str) -> tuple[str, str]:
        """(target path, 'jpeg' | 'sidecar') for a photo file of ``kind``."""
        if kind == "jpeg" and not self.sidecar_only:
            return photo, "jpeg"
        return sidecar_for(photo, self.sidecar_style), "sidecar"

    # -- one photo file ---------------------------------------------------------------------------
    def write(self, photo: str, kind: str, desired_flat: list[str], desired_hier: list[str], *,
              owned_before: list[str], suppressed_before: list[str], props: dict[str, str] | None = None,
              location: dict[str, str] | None = None, cache: dict[str, WriteOutcome] | None = None,
              known: tuple[int, int, str] | None = None) -> WriteOutcome:
        """Bring ``photo``'s keywords (in the file or its sidecar) to the decision. Never raises for a per-file
        problem: the outcome says ``failed`` / ``readonly`` with the reason.

        ``cache`` (target -> outcome) lets two files of one group share a sidecar (Adobe style with
        ``--sidecar-only``: ``DSC_1.JPG`` and ``DSC_1.NEF`` both use ``DSC_1.xmp``): the second reuses the first.
        ``known`` = (size, mtime_ns, content hash) of ``photo`` as the caller hashed it moments ago: a JPEG written in
        place that still has that size and mtime is not hashed a second time for the undo record.
        """
        try:
            target, tkind = self.target_for(photo, kind)
        except LtagError as e:
            return WriteOutcome(photo, None, "failed", str(e))
        if cache is not None and target in cache:
            return dataclasses.replace(cache[target], photo=photo)
        try:
            out = self._write(photo, target, tkind, desired_flat, desired_hier, owned_before, suppressed_before,
                              props or {}, location, known if target == photo else None)
        except (LtagError, OSError) as e:
            why = str(e) if isinstance(e, LtagError) else f"cannot write {os.path.basename(target)}: {e.strerror or e}"
            # nothing written: ownership stays as it was (the file's keywords are unknown here)
            out = WriteOutcome(photo, target, "failed", why, owned=list(owned_before),
                               suppressed=list(suppressed_before))
        if cache is not None:
            cache[target] = out
        return out

    def _write(self, photo: str, target: str, tkind: str, desired_flat: list[str], desired_hier: list[str],
               owned_before: list[str], suppressed_before: list[str], props: dict[str, str],
               location: dict[str, str] | None, known: tuple[int, int, str] | None = None) -> WriteOutcome:
        if tkind == "jpeg":
            # Only the JPEG's head (up to its image data) is read; the image data is copied from this open
            # file into the new one in the kernel, so it is byte-identical by construction.
            with open(target, "rb") as f:
                return self._write_target(photo, target, tkind, desired_flat, desired_hier, owned_before,
                                          suppressed_before, props, location, f, known)
        return self._write_target(photo, target, tkind, desired_flat, desired_hier, owned_before,
                                  suppressed_before, props, location, None)

    def _write_target(self, photo: str, target: str, tkind: str, desired_flat: list[str], desired_hier: list[str],
                      owned_before: list[str], suppressed_before: list[str], props: dict[str, str],
                      location: dict[str, str] | None, f: BinaryIO | None,
                      known: tuple[int, int, str] | None = None) -> WriteOutcome:
        from landmark_tagger import keywords, metadata

        exists = os.path.exists(target)
        if f is not None:  # a JPEG: data is its head
            data: bytes | None = metadata.read_jpeg_head(f)
            state = metadata.read_jpeg_keywords(data)
        elif exists:
            with open(target, "rb") as sf:
                data = sf.read()
            state = metadata.read_sidecar_keywords(data)
        else:
            data, state = None, _empty_state()
        plan = keywords.plan(state, desired_flat, desired_hier, owned_before, suppressed_before)
        edit = plan.edit
        flat_after = _after(list(state.flat), edit.add_flat, edit.remove_flat)
        hier_after = _after(list(state.hierarchical), edit.add_hier, edit.remove_hier)
        base = dict(photo=photo, target=target, owned=list(plan.owned), suppressed=list(plan.suppressed),
                    flat=flat_after, hier=hier_after)
        wants_something = bool(desired_flat or desired_hier or plan.owned)
        ltag_props = {**(edit.ltag or {}), **props} if wants_something else dict(edit.ltag or {})
        stale_props = wants_something and any(state.ltag.get(k) != v for k, v in props.items()
                                         if k not in VOLATILE_PROPS)
        loc = location if (self.iptc_location and location) else None
        if not (plan.changed or stale_props or loc):
            return WriteOutcome(status="unchanged" if (exists and wants_something) else "none", **base)
        edit = dataclasses.replace(edit, ltag=ltag_props, location=loc)

        tail_from: tuple[int, int] | None = None
        if f is not None:
            assert data is not None
            new = metadata.rewrite_jpeg(data, edit)
            if new == data:
                return WriteOutcome(status="unchanged", **base)
            # The new head must still end with the SOS marker the image data follows (the tail is the original's).
            old_end, new_end = metadata.jpeg_header_end(data), metadata.jpeg_header_end(new)
            if old_end != len(data) - 2 or new_end != len(new) - 2 or new[new_end:] != data[old_end:]:
                raise MetadataWriteError(f"{os.path.basename(target)}: the rewrite would change image data; "
                                         "nothing written")
            tail_from = (f.fileno(), len(data))
            before_size, before_hash, after_hash = _file_hashes(f.fileno(), data, new, known)
            undo_blob = encode_head_delta(data, new, before_size - len(data))
            change_kind = "jpeg-delta"
        else:
            new = metadata.rewrite_sidecar(data, edit)
            if data is not None and new == data:
                return WriteOutcome(status="unchanged", **base)
            undo_blob = zlib.compress(data, 6) if data is not None else None
            change_kind = "sidecar" if data is not None else "file-created"
            before_size = len(data) if data is not None else None
            before_hash = fsutil.content_hash(data) if data is not None else None
            after_hash = fsutil.content_hash(new)

        reason = fsutil.write_block_reason(target)
        if reason:
            # Nothing is written: the outcome describes the target as it stays, and ownership as it was. Reporting
            # the planned lists instead would make the catalog own keywords the file never got, and the next write
            # would take them for keywords the user deleted (and suppress them).
            return WriteOutcome(photo, target, "readonly", reason, owned=list(owned_before),
                                suppressed=list(suppressed_before), flat=list(state.flat),
                                hier=list(state.hierarchical))

        if self.fileops.dry_run:
            self.planned.append((target, [*edit.add_flat, *edit.add_hier], [*edit.remove_flat, *edit.remove_hier]))
            self.fileops.atomic_write(target, new, tail_from=tail_from)
            return WriteOutcome(status="dry-run", after_hash=after_hash, **base)

        conn = self.catalog.conn
        cur = conn.execute(
            "INSERT INTO changes(run_id, path, kind, before_hash, after_hash, before_size, undo, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
            (self.run_id, target, change_kind, before_hash, after_hash, before_size, undo_blob, now_iso()))
        change_id = int(cur.lastrowid)
        if conn.in_transaction:  # a caller's transaction: the record must be durable before the replace
            conn.commit()
        try:
            self.fileops.atomic_write(target, new, keep_mtime=self.keep_mtime and tkind == "jpeg", tail_from=tail_from)
        except OSError:  # atomic_write guarantees the target is untouched
            conn.execute("UPDATE changes SET state = 'abandoned' WHERE id = ?", (change_id,))
            raise
        # Any other exception (Ctrl-C delivered after the replace) leaves the change 'pending':
        # undo.resolve_pending settles it by the file's hash.
        conn.execute("UPDATE changes SET state = 'applied' WHERE id = ?", (change_id,))
        return WriteOutcome(status="written", change_id=change_id, after_hash=after_hash, **base)
