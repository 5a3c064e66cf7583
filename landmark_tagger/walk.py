"""Walk a photo archive: which files are photos, which belong together, what to skip and report.

* ``os.scandir`` recursion with an explicit stack (no recursion limit), one ``stat`` per file (the
  stat result is kept: the incremental scan compares size + mtime with the catalog and needs nothing else).
* Skipped, silently (not the photographer's): hidden files and folders (``.*``, which includes macOS
  AppleDouble ``._*`` files and ltag's own temp files), Synology ``@eaDir``, Lightroom ``*.lrdata``
  previews, ``.thumbnails``; plus every ``--exclude`` glob (matched against the name, the path relative
  to the walked root and the absolute path).
* Reported, never fatal: unreadable folders and files (decided by permission bits, the same for root and
  users), symlink loops (visited folders are tracked by ``(st_dev, st_ino)``), broken links, names that are
  not valid Unicode (undecodable bytes, kept by ``os.fsdecode`` as surrogate escapes, cannot be stored
  or written as text: the file is reported with a hint to rename it).
* Grouping: files in one folder with the same stem (case-insensitive), where one is a JPEG/HEIC/PNG/TIFF
  and one a RAW, are one photo. Its *primary* (the file that is recognised) is the JPEG when there is one
  (else the HEIC/TIFF/PNG, else the RAW and its embedded preview); the others are *companions* and get the
  primary's tags (a RAW through its XMP sidecar).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from landmark_tagger.decode import file_kind
from landmark_tagger.fsutil import is_ltag_temp, read_block_reason

SKIP_DIR_NAMES = frozenset({"@eaDir", ".thumbnails", "#recycle", "@Recycle", "$RECYCLE.BIN"})
SKIP_DIR_SUFFIXES = (".lrdata",)
#: Preference of the recognised file within a RAW+image group (lower is preferred).
_PRIMARY_RANK = {"jpeg": 0, "heic": 1, "tiff": 2, "png": 3, "raw": 9}


@dataclass(slots=True)
class FileEntry:
    """One photo file found by the walk (paths are ``str`` as ``os.fsdecode`` gives them)."""

    path: str
    folder: str
    name: str
    stem: str
    ext: str  # original case, no dot
    kind: str  # jpeg | raw | png | tiff | heic
    size: int
    mtime_ns: int
    mode: int


@dataclass(slots=True)
class PhotoGroup:
    """One photo: its recognised file and the files that share its tags (a RAW beside a JPEG)."""

    key: str  # folder + '/' + casefolded stem
    primary: FileEntry
    companions: list[FileEntry] = field(default_factory=list)

    @property
    def files(self) -> list[FileEntry]:
        return [self.primary, *self.companions]


@dataclass(slots=True)
class WalkProblem:
    path: str
    error: str


@dataclass
class WalkResult:
    groups: list[PhotoGroup] = field(default_factory=list)
    problems: list[WalkProblem] = field(default_factory=list)  # unreadable folders/files, loops, bad names
    ignored: int = 0  # files that are not photos (sidecars, documents, ...) or skipped by a rule
    stale_temps: dict[str, list[str]] = field(default_factory=dict)  # folder -> ltag temp names left by a killed run
    roots: list[str] = field(default_factory=list)  # the walked folders, absolute
    unchanged: int = 0  # files counted by the ``known`` fast path (no entries or groups built for them)

    @property
    def n_files(self) -> int:
        return sum(1 + len(g.companions) for g in self.groups)


_KIND_CACHE: dict[str, str | None] = {}
_MISS = object()


def _kind_of_ext(ext: str) -> str | None:
    """``decode.file_kind`` for an extension as written (no dot), cached: the walk calls this per file."""
    try:
        return _KIND_CACHE[ext]
    except KeyError:
        k = _KIND_CACHE[ext] = file_kind("x." + ext)
        return k


def _valid_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def is_skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIP_DIR_NAMES or name.lower().endswith(SKIP_DIR_SUFFIXES)


def group_files(folder: str, entries: list[FileEntry]) -> list[PhotoGroup]:
    """Group one folder's photo files by stem (case-insensitive); see the module docstring."""
    by_stem: dict[str, FileEntry | list[FileEntry]] = {}
    for e in entries:
        k = e.stem.casefold()
        have = by_stem.get(k)
        if have is None:
            by_stem[k] = e
        elif isinstance(have, list):
            have.append(e)
        else:
            by_stem[k] = [have, e]
    groups: list[PhotoGroup] = []
    prefix = folder + "/"
    for stem_cf, files in by_stem.items():
        key = prefix + stem_cf
        if not isinstance(files, list):
            groups.append(PhotoGroup(key, files, []))
            continue
        files.sort(key=lambda e: (_PRIMARY_RANK.get(e.kind, 5), e.name))
        raws = [e for e in files if e.kind == "raw"]
        images = [e for e in files if e.kind != "raw"]
        if images:
            primary, others = images[0], images[1:]
            groups.append(PhotoGroup(key, primary, raws))
            # Two non-RAW images with one stem (DSC_1.JPG + DSC_1.tif) are separate photos.
            groups.extend(PhotoGroup(f"{folder}/{o.name.casefold()}", o) for o in others)
        else:
            groups.append(PhotoGroup(key, raws[0], raws[1:]))
    return groups


class _Excluder:
    def __init__(self, patterns: Iterable[str]):
        self.patterns = [p.rstrip("/") for p in patterns if p]

    def __call__(self, name: str, path: str, rel: str) -> bool:
        for p in self.patterns:
            if fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(path, p):
                return True
        return False


def walk(paths: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str] = (),
         known: dict[str, tuple[int, int]] | None = None) -> WalkResult:
    """Walk files and folders and return photo groups, problems and stale temp files. Never raises for
    a bad path: every problem is reported in :attr:`WalkResult.problems`.

    ``known`` (path -> (size, mtime_ns)) is the incremental fast path: a folder whose photo files all match it
    is only counted (:attr:`WalkResult.unchanged`), without building entries or groups for it.
    """
    res = WalkResult()
    excluded = _Excluder(exclude)
    visited: set[tuple[int, int]] = set()
    loose: dict[str, list[FileEntry]] = {}  # files given directly, grouped by folder

    for raw in paths:
        p = os.path.abspath(os.fsdecode(raw))
        try:
            st = os.stat(p)
        except OSError as e:
            res.problems.append(WalkProblem(_printable(p), f"cannot read: {e.strerror or e}"))
            continue
        if not _valid_text(p):
            res.problems.append(WalkProblem(_printable(p), "path is not valid Unicode (undecodable bytes); "
                                                           "rename it to scan it"))
            continue
        if stat.S_ISDIR(st.st_mode):
            res.roots.append(p)
            _walk_tree(p, st, res, excluded, visited, known)
        elif stat.S_ISREG(st.st_mode):
            entry = _entry_for(p, st, res)
            if entry is not None:
                loose.setdefault(entry.folder, []).append(entry)
            elif file_kind(p) is None:
                res.problems.append(WalkProblem(_printable(p), "not a photo (unknown file type)"))
        else:
            res.problems.append(WalkProblem(_printable(p), "not a regular file or folder"))
    for folder, entries in loose.items():
        # De-duplicate a file given twice, keep walk order.
        seen: dict[str, FileEntry] = {}
        for e in entries:
            seen.setdefault(e.path, e)
        res.groups.extend(group_files(folder, list(seen.values())))
    return res


def _entry_for(path: str, st: os.stat_result, res: WalkResult) -> FileEntry | None:
    folder, name = os.path.split(path)
    kind = file_kind(name)
    if kind is None:
        return None
    if not _valid_text(path):
        res.problems.append(WalkProblem(_printable(path), "file name is not valid Unicode (undecodable bytes); "
                                                          "rename the file or its folder to scan it"))
        return None
    reason = read_block_reason(path, st)
    if reason:
        res.problems.append(WalkProblem(path, reason))
        return None
    stem, dot_ext = os.path.splitext(name)
    return FileEntry(path, folder, name, stem, dot_ext[1:], kind, st.st_size, st.st_mtime_ns, st.st_mode)


def _walk_tree(root: str, root_st: os.stat_result, res: WalkResult, excluded: _Excluder,
               visited: set[tuple[int, int]], known: dict[str, tuple[int, int]] | None = None) -> None:
    stack: list[tuple[str, os.stat_result]] = [(root, root_st)]
    rootlen = len(root.rstrip(os.sep)) + 1
    kinds = _KIND_CACHE
    while stack:
        folder, fst = stack.pop()
        ident = (fst.st_dev, fst.st_ino)
        if ident in visited:
            res.problems.append(WalkProblem(_printable(folder), "symlink loop (folder already visited); skipped"))
            continue
        visited.add(ident)
        reason = read_block_reason(folder, fst)
        if reason:
            res.problems.append(WalkProblem(_printable(folder), reason))
            continue
        try:
            it = os.scandir(folder)
        except OSError as e:
            res.problems.append(WalkProblem(_printable(folder), f"cannot read folder: {e.strerror or e}"))
            continue
        entries: list[FileEntry] = []
        subdirs: list[tuple[str, os.stat_result]] = []
        temps: list[str] = []
        found: list[tuple[str, str, str, str, os.stat_result]] = []  # path, name, stem, ext+kind later
        all_known = known is not None
        known_get = known.get if known is not None else None
        with it:
            for de in it:
                name = de.name
                if name[0] == ".":
                    if is_ltag_temp(name):
                        temps.append(name)
                    continue
                path = de.path
                if excluded.patterns and excluded(name, path, path[rootlen:]):
                    res.ignored += 1
                    continue
                try:
                    is_dir = de.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if is_skipped_dir(name):
                        continue
                    try:
                        sst = de.stat()  # follows a symlinked folder: loops caught by `visited`
                    except OSError as e:
                        res.problems.append(WalkProblem(_printable(path), f"cannot read folder: {e.strerror or e}"))
                        continue
                    if not _valid_text(path):
                        res.problems.append(WalkProblem(_printable(path), "folder name is not valid Unicode "
                                                                         "(undecodable bytes); rename it to scan it"))
                        continue
                    subdirs.append((path, sst))
                    continue
                stem, dot, ext = name.rpartition(".")
                kind = kinds.get(ext, _MISS) if dot else None
                if kind is _MISS:
                    kind = _kind_of_ext(ext)
                if kind is None:
                    if de.is_symlink() and not os.path.exists(path):
                        res.problems.append(WalkProblem(_printable(path), "broken or looping symlink"))
                    else:
                        res.ignored += 1
                    continue
                try:
                    st = de.stat()
                except OSError as e:
                    # ELOOP for a link to itself, ENOENT for a dangling link
                    res.problems.append(WalkProblem(_printable(path), f"cannot read: {e.strerror or e}"))
                    continue
                if st.st_mode & 0o170000 != 0o100000:  # not S_ISREG
                    res.problems.append(WalkProblem(_printable(path), "not a regular file"))
                    continue
                if not name.isascii() and not _valid_text(name):
                    res.problems.append(WalkProblem(_printable(path), "file name is not valid Unicode "
                                                                     "(undecodable bytes); rename it to scan it"))
                    continue
                mode = st.st_mode
                # Readable by bits: the owner bit for the owner and for root (fast path inline).
                if not (mode & stat.S_IRUSR) or (mode & 0o044) != 0o044:
                    reason = read_block_reason(path, st)
                    if reason:
                        res.problems.append(WalkProblem(path, reason))
                        continue
                found.append((path, name, stem, ext, kind, st))
                if all_known and known_get(path) != (st.st_size, st.st_mtime_ns):
                    all_known = False
        if temps:
            res.stale_temps[folder] = temps
        if found and all_known:
            res.unchanged += len(found)  # incremental fast path: nothing here changed since the last scan
        elif found:
            entries = [FileEntry(path, folder, name, stem, ext, kind, st.st_size, st.st_mtime_ns, st.st_mode)
                       for path, name, stem, ext, kind, st in found]
            entries.sort(key=lambda e: e.name)
            res.groups.extend(group_files(folder, entries))
        subdirs.sort(key=lambda t: t[0], reverse=True)  # pop() then visits them in name order
        stack.extend(subdirs)
