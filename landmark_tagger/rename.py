"""Rename photo groups by landmark: plan, journal, execute, resume, undo.

A *group* is every file of one photo: the catalog rows sharing a ``group_key`` (JPEG + RAW) plus the
companions found on disk at plan time — XMP sidecars (``DSC_0001.xmp``, ``DSC_0001.NEF.xmp``, darktable
duplicates ``DSC_0001_01.NEF.xmp``), ``.pp3``, ``.dop``, ``.on1``, ``.AAE``, any ``<stem>.<anything>``.
Groups move together or not at all.

Safety:

- :func:`plan_rename` only reads. It detects every conflict before anything moves: a target that
  exists (on disk or in the catalog), two sources to one target, names equal under casefold (case-
  insensitive file systems), a target that is another source of the batch. Conflicts are resolved by
  bumping ``{seq}``; a template without ``{seq}`` is refused.
- :func:`execute_rename` writes the whole batch to the journal (``runs`` row of kind ``rename`` +
  ``rename_moves`` + the folders it will create in ``rename_dirs``) in one transaction before the first
  move, then marks each move ``done`` in the same transaction that updates the catalog row.
- A move never overwrites: ``renameat2(RENAME_NOREPLACE)`` where the kernel offers it, else
  ``link`` + ``unlink``, else check-then-rename. Across devices: copy to a temp name beside the target,
  fsync, verify the content hash, rename into place, then delete the source — never a half copy.
- :func:`resume_rename` and :func:`undo_rename` reconcile every ``pending`` move with what is on disk
  (source gone + target present with the journal's size/hash = moved; both names on one inode = moved
  half-way; a temp copy = removed), so a kill -9 at any moment loses and orphans nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from landmark_tagger.errors import RenameError
from landmark_tagger.filenames import DEFAULT_TEMPLATE, Template
from landmark_tagger.fsutil import content_hash_file, file_hash_matches, hasher_for, write_block_reason

log = logging.getLogger(__name__)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rename_moves (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,               -- order of the moves in the batch
        grp INTEGER NOT NULL,               -- photo group number within the batch (moves together)
        old_path TEXT NOT NULL,
        new_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_hash TEXT NOT NULL,         -- fsutil.content_hash (SHA-256 hex in batches from before)
        photo_id INTEGER,                   -- the catalog row of this file, if any
        state TEXT NOT NULL DEFAULT 'pending', -- pending | done | undone | skipped
        error TEXT,
        PRIMARY KEY (run_id, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS rename_moves_new ON rename_moves(new_path)",
    """CREATE TABLE IF NOT EXISTS rename_dirs (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        path TEXT NOT NULL,                 -- a folder this batch creates (removed again by undo when empty)
        PRIMARY KEY (run_id, path)
    )""",
]

LOST_TRACK_WARNING = ("Catalog-based programs (Lightroom, Capture One, ...) lose track of renamed files unless "
                      "you tell them (e.g. Lightroom: Find Missing Folder / Synchronize).")

_DARKTABLE_DUP = re.compile(r"^_\d+(\.[^./]+)\.xmp$", re.IGNORECASE)
_SLOW_ENV = "LTAG_TEST_SLOW_RENAME"


def ensure_rename_schema(conn: sqlite3.Connection) -> None:
    """Create the rename journal tables (idempotent)."""
    for stmt in _SCHEMA:
        conn.execute(stmt)


# --------------------------------------------------------------------------------------------
# plan


@dataclass
class Member:
    """One file of a group."""

    path: str                      # current absolute path
    suffix: str                    # the name after the group's stem, original case: '.NEF', '.NEF.xmp', '_01.NEF.xmp'
    photo_id: int | None = None
    size: int = 0
    content_hash: str | None = None
    new_path: str | None = None


@dataclass
class PlannedGroup:
    key: str
    root: str
    folder: str
    stem: str
    landmark: str
    date: datetime
    members: list[Member]
    action: str = "move"           # move | unchanged | skipped
    reason: str | None = None
    seq: int | None = None
    bumped: bool = False
    new_base: str | None = None    # absolute, without suffix
    row: dict[str, Any] = field(default_factory=dict, repr=False)   # the primary's catalog row


@dataclass
class RenamePlan:
    template: str
    roots: list[str]
    groups: list[PlannedGroup] = field(default_factory=list)
    unknown_kept: int = 0          # photos with no landmark, left in place
    not_recognised: int = 0        # photos not scanned/recognised yet (status pending/failed), left in place
    new_dirs: list[str] = field(default_factory=list)
    bumped: int = 0                # groups whose seq was bumped to avoid a conflict

    @property
    def moving(self) -> list[PlannedGroup]:
        return [g for g in self.groups if g.action == "move"]

    @property
    def skipped(self) -> list[PlannedGroup]:
        return [g for g in self.groups if g.action == "skipped"]

    @property
    def unchanged(self) -> list[PlannedGroup]:
        return [g for g in self.groups if g.action == "unchanged"]

    def moves(self) -> list[tuple[str, str]]:
        return [(m.path, m.new_path) for g in self.moving for m in g.members if m.new_path]

    def counts(self) -> dict[str, int]:
        return {"groups": len(self.moving), "files": len(self.moves()), "unchanged": len(self.unchanged),
                "skipped": len(self.skipped), "unknown_kept": self.unknown_kept,
                "not_recognised": self.not_recognised, "new_folders": len(self.new_dirs), "seq_bumped": self.bumped}


def _under(root: str) -> tuple[str, str]:
    base = root if root.endswith(os.sep) else root + os.sep
    return base, base[:-1] + chr(ord(os.sep) + 1)


def _parse_date(taken_at: str | None) -> datetime | None:
    if not taken_at:
        return None
    try:
        return datetime.fromisoformat(taken_at.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _rows_under(conn: sqlite3.Connection, root: str) -> list[dict[str, Any]]:
    lo, hi = _under(root)
    cur = conn.execute(
        "SELECT id, path, folder, name, stem, ext, group_key, role, landmark, status, taken_at, camera, city, "
        "region, country, size, mtime_ns, content_hash FROM photos WHERE path > ? AND path < ? ORDER BY path", (lo, hi))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _claim(name: str, stems: list[str], folder_names_cf: set[str]) -> str | None:
    """The (longest) group stem that a non-catalog file ``name`` belongs to, or None."""
    cf = name.casefold()
    best = None
    for s in stems:
        scf = s.casefold()
        if not cf.startswith(scf) or len(cf) == len(scf):
            continue
        rest = name[len(s):]
        ok = rest.startswith(".")
        if not ok:
            m = _DARKTABLE_DUP.match(rest)
            ok = bool(m) and (scf + m.group(1).casefold()) in folder_names_cf  # DSC_0001_01.NEF.xmp needs DSC_0001.NEF
        if ok and (best is None or len(s) > len(best)):
            best = s
    return best


def plan_rename(catalog: Any, roots: Sequence[str | os.PathLike[str]], *, template: str = DEFAULT_TEMPLATE,
                unknown_as: str | None = None, hash_files: bool = True) -> RenamePlan:
    """Plan renaming every recognised photo group under ``roots`` (reads only; moves nothing).

    Args:
        catalog: a Catalog (or sqlite3 connection).
        roots: archive roots; files never leave the root they are under.
        template: see docs/rename.md; refused when unsafe.
        unknown_as: landmark text for photos with no landmark (they stay put when None).
        hash_files: compute size + content hash of every file that will move (the journal needs them; reuses the
            catalog's hash when size and mtime are unchanged).

    Raises:
        RenameError: a root is not a folder, the template is unsafe, or a conflict cannot be resolved.
    """
    tpl = Template(template)
    conn = getattr(catalog, "conn", catalog)
    plan = RenamePlan(template=template, roots=[])
    planned_cf: set[str] = set()
    listings: dict[str, dict[str, str]] = {}   # folder -> {casefolded name: name}
    bases: dict[str, set[str]] = {}            # folder -> casefolded names up to each '.': taken photo bases

    def listing(folder: str) -> dict[str, str]:
        """Names in ``folder`` and in every existing folder equal to it under casefold (case-insensitive
        file systems see them as one folder)."""
        if folder not in listings:
            names: dict[str, str] = {}
            for variant in _case_variants(folder):
                try:
                    names.update({n.casefold(): n for n in os.listdir(variant)})
                except OSError:
                    pass
            listings[folder] = names
        return listings[folder]

    def taken_bases(folder: str) -> set[str]:
        if folder not in bases:
            out: set[str] = set()
            for cf in listing(folder):
                i = cf.find(".", 1)
                while i != -1:
                    out.add(cf[:i])
                    i = cf.find(".", i + 1)
            bases[folder] = out
        return bases[folder]

    conflicts: list[str] = []
    for root_in in roots:
        root = os.path.abspath(os.path.expanduser(os.fspath(root_in)))
        if not os.path.isdir(root):
            raise RenameError(f"{root} is not a folder: give the archive root(s) to rename under.")
        plan.roots.append(root)
        rows = _rows_under(conn, root)
        if not rows and os.path.realpath(root) != root:
            root = os.path.realpath(root)
            plan.roots[-1] = root
            rows = _rows_under(conn, root)
        catalog_cf = {r["path"].casefold() for r in rows}
        by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
        stems_by_folder: dict[str, set[str]] = defaultdict(set)
        group_of_path: dict[str, str] = {}
        for r in rows:
            by_group[r["group_key"]].append(r)
            stems_by_folder[r["folder"]].add(r["stem"])
            group_of_path[r["path"]] = r["group_key"]
        # companions on disk: folder -> stem(casefold) -> [names]
        companions: dict[str, dict[str, list[str]]] = {}
        for folder, stems in stems_by_folder.items():
            names = listing(folder)
            catalog_names = {os.path.basename(p).casefold() for p in group_of_path if os.path.dirname(p) == folder}
            cmap: dict[str, list[str]] = defaultdict(list)
            slist = sorted(stems, key=len, reverse=True)
            for cf, name in names.items():
                if cf in catalog_names or name.startswith("."):
                    continue
                s = _claim(name, slist, set(names))
                if s is not None:
                    cmap[s.casefold()].append(name)
            companions[folder] = cmap

        candidates: list[PlannedGroup] = []
        for key, grows in by_group.items():
            grows.sort(key=lambda r: (r["role"] != "primary", r["path"]))
            prim = grows[0]
            landmark = next((r["landmark"] for r in grows if r["landmark"]), None)
            if landmark is None:
                if prim["status"] in ("tagged", "unknown") and unknown_as:
                    landmark = unknown_as
                elif prim["status"] in ("tagged", "unknown"):
                    plan.unknown_kept += 1
                    continue
                else:
                    plan.not_recognised += 1
                    continue
            stem = prim["stem"]
            folder = prim["folder"]
            members: list[Member] = []
            for r in grows:
                if r["folder"] == folder and r["name"].casefold().startswith(stem.casefold()):
                    members.append(Member(r["path"], r["name"][len(stem):], photo_id=r["id"]))
                else:  # a catalog row of the group with an unexpected name: move it with its own stem
                    members.append(Member(r["path"], r["name"][len(r["stem"]):], photo_id=r["id"]))
            for name in sorted(companions.get(folder, {}).get(stem.casefold(), [])):
                members.append(Member(os.path.join(folder, name), name[len(stem):]))
            date = _parse_date(prim["taken_at"])
            for r in grows:  # the primary has no capture date: another file of the group may
                date = date or _parse_date(r["taken_at"])
            g = PlannedGroup(key=key, root=root, folder=folder, stem=stem, landmark=landmark,
                             date=date or datetime(1900, 1, 1), members=members)
            if date is None:
                # no capture date anywhere: the oldest modification time of the group's files. Not the
                # primary's alone: ltag's own keyword write (without --keep-mtime) made that the day of the
                # scan, while a RAW companion is never written and keeps its camera time.
                mtimes = []
                for m in members:
                    try:
                        mtimes.append(os.stat(m.path).st_mtime)
                    except OSError:
                        pass
                if mtimes:
                    g.date = datetime.fromtimestamp(min(mtimes)).replace(microsecond=0)
            g.row = prim
            reason = _check_members(g)
            if reason:
                g.action, g.reason = "skipped", reason
            candidates.append(g)
            plan.groups.append(g)

        def fields(g: PlannedGroup, seq: int | None = None) -> dict[str, Any]:
            r = g.row
            return {"landmark": g.landmark, "place": r["city"] or r["region"] or r["country"], "city": r["city"],
                    "country": r["country"], "date": g.date, "camera": r["camera"], "stem": g.stem, "seq": seq,
                    "ext": r["ext"]}

        buckets: dict[tuple[str, str], list[PlannedGroup]] = defaultdict(list)
        for g in candidates:
            if g.action != "skipped":
                buckets[(g.landmark.casefold(), g.date.strftime("%Y-%m-%d"))].append(g)
        for bkey in sorted(buckets):
            groups = sorted(buckets[bkey], key=lambda g: (g.date, g.folder, g.stem))
            used: set[int] = set()
            current_rel = {id(g): os.path.relpath(os.path.join(g.folder, g.stem), root).replace(os.sep, "/")
                           for g in groups}
            # groups already named by this template keep their seq (re-runs are no-ops)
            for g in groups:
                pat = tpl.seq_pattern(fields(g))
                rel = current_rel[id(g)]
                if pat is not None:
                    m = pat.match(rel)
                    if m and int(m.group(1)) not in used:
                        g.action, g.seq = "unchanged", int(m.group(1))
                        used.add(g.seq)
                elif tpl.render(fields(g)) == rel:
                    g.action = "unchanged"
            for g in groups:
                if g.action != "move":
                    continue
                seq = 1
                while True:
                    while seq in used:
                        seq += 1
                    rel = tpl.render(fields(g, seq))
                    new_base = os.path.normpath(os.path.join(root, *rel.split("/")))
                    if os.path.commonpath([root, new_base]) != root or new_base == root:
                        raise RenameError(f"The template {template!r} would move files outside {root}.")
                    if new_base.casefold() == os.path.join(g.folder, g.stem).casefold():
                        g.action, g.reason = "unchanged", None  # same name (at most a case difference)
                        break
                    clash = _clash(g, new_base, planned_cf, catalog_cf, listing, taken_bases)
                    if clash is None:
                        break
                    if not tpl.has_seq:
                        conflicts.append(f"{g.members[0].path} -> {clash}")
                        break
                    g.bumped = True
                    seq += 1
                if g.action != "move" or (conflicts and not tpl.has_seq):
                    continue
                used.add(seq)
                g.seq, g.new_base = seq, new_base
                plan.bumped += int(g.bumped)
                planned_cf.add(new_base.casefold() + "/")      # the base itself is taken too
                for m in g.members:
                    m.new_path = new_base + m.suffix
                    planned_cf.add(m.new_path.casefold())
                    if len(os.path.basename(m.new_path).encode("utf-8", "surrogateescape")) > 255:
                        g.action, g.reason = "skipped", "the new file name would be longer than 255 bytes"
    if conflicts:
        raise RenameError("The template has no {seq} to tell apart photos that would get the same name:\n  "
                          + "\n  ".join(conflicts[:10]) + ("\n  ..." if len(conflicts) > 10 else "")
                          + "\nAdd {seq} (or {stem}) to the template.")
    for g in plan.groups:
        if g.action != "move":
            for m in g.members:
                m.new_path = None
    # folders to create (recorded in the journal so that undo removes them again)
    new_dirs: set[str] = set()
    for g in plan.moving:
        d = os.path.dirname(g.new_base or "")
        while d and d != g.root and not os.path.isdir(d):
            new_dirs.add(d)
            d = os.path.dirname(d)
    plan.new_dirs = sorted(new_dirs)
    if hash_files:
        for g in plan.moving:
            _hash_members(conn, g)
            if g.action == "skipped":
                for m in g.members:
                    m.new_path = None
    return plan


def _check_members(g: PlannedGroup) -> str | None:
    for m in g.members:
        try:
            st = os.lstat(m.path)
        except FileNotFoundError:
            return f"{os.path.basename(m.path)} has vanished"
        except OSError as e:
            return f"{os.path.basename(m.path)}: {e.strerror}"
        if not stat.S_ISREG(st.st_mode):
            return f"{os.path.basename(m.path)} is not a regular file"
        reason = write_block_reason(m.path)
        if reason:
            return f"{os.path.basename(m.path)}: {reason}"
        m.size = st.st_size
    return None


def _case_variants(folder: str) -> list[str]:
    """Existing folders whose path equals ``folder`` under casefold (``folder`` itself first if it exists)."""
    folder = os.path.abspath(folder)
    parent, name = os.path.split(folder)
    if parent == folder:
        return [folder]
    out = [folder] if os.path.isdir(folder) else []
    for p in _case_variants(parent) if parent != folder else []:
        try:
            entries = os.listdir(p)
        except OSError:
            continue
        for e in entries:
            cand = os.path.join(p, e)
            if e.casefold() == name.casefold() and cand not in out and os.path.isdir(cand):
                out.append(cand)
    return out


def _clash(g: PlannedGroup, new_base: str, planned_cf: set[str], catalog_cf: set[str],
           listing: Callable[[str], dict[str, str]], taken_bases: Callable[[str], set[str]]) -> str | None:
    if new_base.casefold() + "/" in planned_cf:
        return new_base + " (another photo of this batch gets that name)"
    if os.path.basename(new_base).casefold() in taken_bases(os.path.dirname(new_base)):
        return new_base + ".* (files with that name exist)"
    seen: set[str] = set()
    for m in g.members:
        target = new_base + m.suffix
        cf = target.casefold()
        if cf in seen or cf in planned_cf:
            return target + " (another photo of this batch gets that name)"
        seen.add(cf)
        folder = os.path.dirname(target)
        if os.path.basename(target).casefold() in listing(folder) or os.path.lexists(target):
            return target + " (exists)"
        if cf in catalog_cf:
            return target + " (in the catalog)"
    return None


def _hash_members(conn: sqlite3.Connection, g: PlannedGroup) -> None:
    for m in g.members:
        try:
            st = os.stat(m.path)
            if m.photo_id is not None:
                row = conn.execute("SELECT size, mtime_ns, content_hash FROM photos WHERE id = ?", (m.photo_id,)).fetchone()
                if row and row[2] and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                    m.size, m.content_hash = st.st_size, row[2]
                    continue
            m.size, m.content_hash = st.st_size, content_hash_file(m.path)
        except OSError as e:
            g.action, g.reason = "skipped", f"{os.path.basename(m.path)}: {e.strerror}"
            return


# --------------------------------------------------------------------------------------------
# moving files without ever overwriting


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_renameat2: Any = None


def _load_renameat2() -> Any:
    global _renameat2
    if _renameat2 is None:
        fn: Any = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = False
        _renameat2 = fn
    return _renameat2


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``; raise FileExistsError if ``dst`` exists (never overwrite).

    OSError(EXDEV) when they are on different devices.
    """
    fn = _load_renameat2()
    if fn:
        rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        e = ctypes.get_errno()
        if e == errno.EEXIST:
            raise FileExistsError(e, os.strerror(e), dst)
        if e not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(e, os.strerror(e), src)
    try:
        os.link(src, dst)            # fails with EEXIST: never overwrites
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise
        if os.path.lexists(dst):     # no hard links here (FAT, some network shares): check, then rename
            raise FileExistsError(errno.EEXIST, "File exists", dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(target: str, run_id: int, seq: int) -> str:
    tag = hashlib.sha256(f"{run_id}:{seq}".encode()).hexdigest()[:12]
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.ltag-tmp-{tag}")


def _copy_move(src: str, dst: str, tmp: str, size: int, sha: str) -> None:
    """Cross-device move: copy to ``tmp`` beside ``dst``, fsync, verify, rename into place, delete ``src``."""
    h = hasher_for(sha)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as fi, os.fdopen(fd, "wb", closefd=True) as fo:
            while True:
                buf = fi.read(1 << 20)
                if not buf:
                    break
                h.update(buf)
                fo.write(buf)
            fo.flush()
            os.fsync(fo.fileno())
        if h.hexdigest() != sha or os.path.getsize(tmp) != size:
            raise OSError(errno.EIO, "the copy does not match the original (changed while copying?)", src)
        shutil.copystat(src, tmp)
        rename_noreplace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(dst))
    os.unlink(src)
    _fsync_dir(os.path.dirname(src))


def _move_file(src: str, dst: str, tmp: str, size: int, sha: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        rename_noreplace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_move(src, dst, tmp, size, sha)


def _slow() -> None:
    """Test hook: ``LTAG_TEST_SLOW_RENAME=seconds`` only slows the batch down (for kill tests)."""
    v = os.environ.get(_SLOW_ENV)
    if v:
        try:
            time.sleep(float(v))
        except ValueError:
            pass


# --------------------------------------------------------------------------------------------
# journal + execution


@dataclass
class RenameResult:
    run_id: int | None
    moved: int = 0                 # files
    groups: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    status: str = "done"


def unfinished_batch(catalog: Any) -> int | None:
    """The id of a rename batch that was interrupted (needs --resume or undo), or None."""
    conn = getattr(catalog, "conn", catalog)
    row = conn.execute("SELECT id FROM runs WHERE kind = 'rename' AND status IN ('running', 'interrupted') "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else None


def _now() -> str:
    from landmark_tagger.catalog import now_iso

    return now_iso()


def _tx(conn: sqlite3.Connection) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def cm():  # noqa: ANN202
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    return cm()


def _group_key_for(old_key: str, old_folder: str, old_stem: str, old_name: str, new_folder: str, new_stem: str,
                   new_name: str) -> str:
    """The new group key, in the convention of the old one (walk.py: folder + '/' + casefolded stem, or
    + casefolded name for a second non-RAW image with the same stem)."""
    if old_key == old_folder + "/" + old_stem.casefold():
        return new_folder + "/" + new_stem.casefold()
    if old_key == old_folder + "/" + old_name.casefold():
        return new_folder + "/" + new_name.casefold()
    if old_key == (old_folder + "/" + old_stem).casefold():
        return (new_folder + "/" + new_stem).casefold()
    return new_folder + "/" + new_stem.casefold()


def _update_photo(conn: sqlite3.Connection, photo_id: int | None, old: str, new: str) -> None:
    """Point the catalog row of a moved file (and any write_target naming it) at its new path."""
    if photo_id is None:   # a sidecar: the rows naming it as their write target sit in its old or new folder
        conn.execute("UPDATE photos SET write_target = ? WHERE write_target = ? AND folder IN (?, ?)",
                     (new, old, os.path.dirname(old), os.path.dirname(new)))
        return
    row = conn.execute("SELECT path, folder, stem, ext, group_key, name FROM photos WHERE id = ?",
                       (photo_id,)).fetchone()
    if not row or row[0] != old:
        return  # the row was rescanned or removed meanwhile: nothing to update
    _, folder, stem, ext, key, old_name = row
    name = os.path.basename(new)
    new_folder = os.path.dirname(new)
    new_stem = name[: -(len(ext) + 1)] if ext and name.endswith("." + ext) else os.path.splitext(name)[0]
    conn.execute("UPDATE photos SET path = ?, folder = ?, name = ?, stem = ?, group_key = ? WHERE id = ?",
                 (new, new_folder, name, new_stem, _group_key_for(key, folder, stem, old_name, new_folder, new_stem, name), photo_id))
    conn.execute("UPDATE photos SET write_target = ? WHERE write_target = ? AND folder = ?", (new, old, folder))
    conn.execute("UPDATE photos SET write_target = ? WHERE write_target = ? AND folder = ?", (new, old, new_folder))


def _journal(conn: sqlite3.Connection, plan: RenamePlan) -> int:
    with _tx(conn):
        cur = conn.execute("INSERT INTO runs(kind, started_at, status, args) VALUES('rename', ?, 'running', ?)",
                           (_now(), json.dumps({"roots": plan.roots, "template": plan.template}, ensure_ascii=False)))
        run_id = int(cur.lastrowid)
        seq = 0
        rows = []
        for gi, g in enumerate(plan.moving):
            for m in g.members:
                if m.content_hash is None:
                    raise RenameError(f"{m.path} was not hashed; plan with hash_files=True before executing.")
                seq += 1
                rows.append((run_id, seq, gi, m.path, m.new_path, m.size, m.content_hash, m.photo_id))
        conn.executemany("INSERT INTO rename_moves(run_id, seq, grp, old_path, new_path, size, content_hash, photo_id) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO rename_dirs(run_id, path) VALUES (?, ?)", [(run_id, d) for d in plan.new_dirs])
    return run_id


def _moves(conn: sqlite3.Connection, run_id: int, states: Sequence[str], desc: bool = False) -> list[dict[str, Any]]:
    q = ",".join("?" * len(states))
    cur = conn.execute(f"SELECT seq, grp, old_path, new_path, size, content_hash, photo_id, state FROM rename_moves "
                       f"WHERE run_id = ? AND state IN ({q}) ORDER BY seq {'DESC' if desc else 'ASC'}",
                       (run_id, *states))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _mark(conn: sqlite3.Connection, run_id: int, m: dict[str, Any], state: str, error: str | None = None,
          *, forward: bool | None = None) -> None:
    with _tx(conn):
        conn.execute("UPDATE rename_moves SET state = ?, error = ? WHERE run_id = ? AND seq = ?",
                     (state, error, run_id, m["seq"]))
        if forward is True:
            _update_photo(conn, m["photo_id"], m["old_path"], m["new_path"])
        elif forward is False:
            _update_photo(conn, m["photo_id"], m["new_path"], m["old_path"])


def _matches(path: str, size: int, sha: str) -> bool:
    try:
        return os.path.getsize(path) == size and file_hash_matches(sha, path)
    except OSError:
        return False


def _reconcile(m: dict[str, Any], run_id: int) -> str:
    """Where a pending move stands on disk: 'todo' (not started), 'moved' (completed; finished here if it was
    half-way), or 'conflict:<why>'. Removes this move's temp copy if a kill left one."""
    old, new = m["old_path"], m["new_path"]
    tmp = _temp_for(new, run_id, m["seq"])
    old_ok, new_ok = os.path.lexists(old), os.path.lexists(new)
    if os.path.lexists(tmp):
        if not old_ok and not new_ok and _matches(tmp, m["size"], m["content_hash"]):
            rename_noreplace(tmp, new)   # cannot happen with our ordering; recover rather than lose
            return "moved"
        if old_ok:
            os.unlink(tmp)
    if old_ok and not new_ok:
        return "todo"
    if new_ok and not old_ok:
        if _matches(new, m["size"], m["content_hash"]):
            return "moved"
        return "conflict:the file at the new name is not the one that was moved"
    if old_ok and new_ok:
        try:
            same = os.path.samefile(old, new)
        except OSError:
            same = False
        if same or (_matches(new, m["size"], m["content_hash"]) and _matches(old, m["size"], m["content_hash"])):
            return "both"            # link made / copy renamed into place, source not yet removed
        return "conflict:another file now has the new name"
    return "conflict:the file has vanished"


def _run_group(conn: sqlite3.Connection, run_id: int, group: list[dict[str, Any]], result: RenameResult) -> None:
    """Move one group's pending files; on a failure move the group's already moved files back."""
    done: list[dict[str, Any]] = []
    for m in group:
        _slow()
        try:
            state = _reconcile(m, run_id)
            if state == "both":
                os.unlink(m["old_path"])
            elif state == "todo":
                if os.path.getsize(m["old_path"]) != m["size"]:
                    raise OSError(errno.EIO, "the file changed since the plan", m["old_path"])
                _move_file(m["old_path"], m["new_path"], _temp_for(m["new_path"], run_id, m["seq"]), m["size"],
                           m["content_hash"])
            elif state.startswith("conflict:"):
                raise OSError(errno.EEXIST, state.split(":", 1)[1], m["new_path"])
        except OSError as e:
            why = e.strerror or str(e)
            result.skipped.append((m["old_path"], why))
            for d in reversed(done):   # keep the group together
                try:
                    rename_noreplace(d["new_path"], d["old_path"])
                    _mark(conn, run_id, d, "skipped", f"moved back: {why} ({os.path.basename(m['old_path'])})",
                          forward=False)
                except OSError as e2:
                    log.error("cannot move %s back to %s: %s", d["new_path"], d["old_path"], e2)
            _mark(conn, run_id, m, "skipped", why)
            for rest in group[group.index(m) + 1:]:
                _mark(conn, run_id, rest, "skipped", f"group skipped: {why}")
            return
        _slow()
        _mark(conn, run_id, m, "done", forward=True)
        done.append(m)
        result.moved += 1
    result.groups += 1


def _run_batch(catalog: Any, run_id: int, progress: Callable[[int, int], None] | None) -> RenameResult:
    conn = getattr(catalog, "conn", catalog)
    result = RenameResult(run_id)
    pending = _moves(conn, run_id, ("pending",))
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for m in pending:
        groups[m["grp"]].append(m)
    total = len(pending)
    try:
        for g in groups.values():
            _run_group(conn, run_id, g, result)
            if progress:
                progress(result.moved + len(result.skipped), total)
    except BaseException:
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (run_id,))
        raise
    summary = {"moved": result.moved, "groups": result.groups, "skipped": len(result.skipped)}
    conn.execute("UPDATE runs SET status = 'done', finished_at = ?, summary = ? WHERE id = ?",
                 (_now(), json.dumps(summary), run_id))
    return result


def execute_rename(catalog: Any, plan: RenamePlan, *,
                   progress: Callable[[int, int], None] | None = None) -> RenameResult:
    """Journal the plan in one transaction, then move group by group (see the module docstring).

    Raises:
        RenameError: an earlier batch is unfinished (resume or undo it first).
    """
    conn = getattr(catalog, "conn", catalog)
    prev = unfinished_batch(conn)
    if prev is not None:
        raise RenameError(f"Rename batch {prev} was interrupted. Finish it with `ltag rename --resume` or revert it "
                          f"with `ltag undo --rename --batch {prev}` first.")
    if not plan.moving:
        return RenameResult(None, status="nothing")
    run_id = _journal(conn, plan)
    return _run_batch(catalog, run_id, progress)


def resume_rename(catalog: Any, run_id: int | None = None, *,
                  progress: Callable[[int, int], None] | None = None) -> RenameResult:
    """Complete the last interrupted rename batch (or ``run_id``).

    Raises:
        RenameError: there is no interrupted batch.
    """
    conn = getattr(catalog, "conn", catalog)
    run_id = run_id if run_id is not None else unfinished_batch(conn)
    row = conn.execute("SELECT status FROM runs WHERE id = ? AND kind = 'rename'", (run_id,)).fetchone() \
        if run_id is not None else None
    if not row or row[0] not in ("running", "interrupted"):
        raise RenameError("There is no interrupted rename batch to resume.")
    return _run_batch(catalog, run_id, progress)


@dataclass
class RenameUndoResult:
    run_id: int
    restored: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)   # (path, why)
    folders_removed: int = 0
    status: str = "undone"


def last_rename_batch(catalog: Any) -> int | None:
    """The newest rename batch that can be undone."""
    conn = getattr(catalog, "conn", catalog)
    row = conn.execute("SELECT id FROM runs WHERE kind = 'rename' AND status IN ('done', 'running', 'interrupted') "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else None


def undo_rename(catalog: Any, run_id: int | None = None) -> RenameUndoResult:
    """Move every file of a rename batch back (newest move first) and restore the catalog paths.

    Works on finished and interrupted batches alike (pending moves are reconciled with the disk first).
    Files that cannot be moved back (gone, or their old name is taken by another file) are reported in
    ``problems`` and keep their journal state; the batch is marked ``undone`` only when nothing is left.

    Raises:
        RenameError: no such batch, or nothing to undo.
    """
    conn = getattr(catalog, "conn", catalog)
    if run_id is None:
        run_id = last_rename_batch(conn)
        if run_id is None:
            raise RenameError("There is no rename batch to undo.")
    row = conn.execute("SELECT status FROM runs WHERE id = ? AND kind = 'rename'", (run_id,)).fetchone()
    if not row:
        raise RenameError(f"There is no rename batch {run_id}.")
    if row[0] == "undone":
        raise RenameError(f"Rename batch {run_id} is already undone.")
    res = RenameUndoResult(run_id)
    # 1. settle interrupted moves
    for m in _moves(conn, run_id, ("pending",), desc=True):
        try:
            state = _reconcile(m, run_id)
        except OSError as e:
            res.problems.append((m["old_path"], e.strerror or str(e)))
            continue
        if state == "moved":
            _mark(conn, run_id, m, "done", forward=True)
        elif state == "both":
            os.unlink(m["new_path"])   # same inode or a verified copy: the original name still holds the file
            _mark(conn, run_id, m, "undone")
        elif state == "todo":
            _mark(conn, run_id, m, "undone", "never moved")
        else:
            res.problems.append((m["old_path"], state.split(":", 1)[1]))
    # 2. move back, newest first
    for m in _moves(conn, run_id, ("done",), desc=True):
        _slow()
        old, new = m["old_path"], m["new_path"]
        if not os.path.lexists(new):
            if os.path.lexists(old) and _matches(old, m["size"], m["content_hash"]):
                _mark(conn, run_id, m, "undone", forward=False)   # already back (a killed undo)
                res.restored += 1
                continue
            res.problems.append((new, "missing: moved or deleted since the rename"))
            continue
        tmp = _temp_for(old, run_id, -m["seq"])
        if os.path.lexists(tmp):
            os.unlink(tmp)   # a killed cross-device undo's partial copy; the file is still at the new name
        try:
            _move_file(new, old, tmp, m["size"], m["content_hash"])
        except FileExistsError:
            try:
                same = os.path.samefile(old, new)
            except OSError:
                same = False
            if same or (_matches(old, m["size"], m["content_hash"]) and _matches(new, m["size"], m["content_hash"])):
                # a killed undo left both names (one inode, or a verified copy)
                os.unlink(new)
            else:
                res.problems.append((old, "another file now has the old name"))
                continue
        except OSError as e:
            res.problems.append((new, e.strerror or str(e)))
            continue
        _slow()
        _mark(conn, run_id, m, "undone", forward=False)
        res.restored += 1
    # 3. folders this batch created, deepest first, when empty
    for (d,) in conn.execute("SELECT path FROM rename_dirs WHERE run_id = ? ORDER BY length(path) DESC, path DESC",
                             (run_id,)).fetchall():
        try:
            os.rmdir(d)
            res.folders_removed += 1
        except OSError:
            pass
    left = conn.execute("SELECT count(*) FROM rename_moves WHERE run_id = ? AND state IN ('pending', 'done')",
                        (run_id,)).fetchone()[0]
    pending = conn.execute("SELECT count(*) FROM rename_moves WHERE run_id = ? AND state = 'pending'",
                           (run_id,)).fetchone()[0]
    res.status = "undone" if left == 0 else "partly undone"
    summary = {"restored": res.restored, "problems": len(res.problems)}
    status = "undone" if left == 0 else ("interrupted" if pending else "done")
    conn.execute("UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                 (status, _now(), json.dumps(summary), run_id))
    return res


def batch_moves(catalog: Any, run_id: int) -> list[dict[str, Any]]:
    """Every move of a batch with its state (for reports)."""
    conn = getattr(catalog, "conn", catalog)
    return _moves(conn, run_id, ("pending", "done", "undone", "skipped"))


__all__ = ["DEFAULT_TEMPLATE", "LOST_TRACK_WARNING", "Member", "PlannedGroup", "RenamePlan", "RenameResult",
           "RenameUndoResult", "batch_moves", "ensure_rename_schema", "execute_rename", "last_rename_batch",
           "plan_rename", "rename_noreplace", "resume_rename", "undo_rename", "unfinished_batch"]
