"""Everything that changes a file in the photo archive goes through this module.

* :func:`atomic_write` — a temp file beside the target (``.{name}.ltag-tmp-{hex}``, created with
  ``O_EXCL``), write, ``fsync``, copy the permission bits (and ownership, best effort), ``os.replace``
  over the target, ``fsync`` the folder. A crash at any moment leaves the old or the new file, never
  a broken one; on any error the temp file is removed and the target is untouched. SIGINT/SIGTERM
  are deferred during the replace (as exiftool does) and delivered right after.
* :func:`write_block_reason` / :func:`is_writable_by_bits` — "read-only" is decided by permission
  bits, never by ``os.access`` or by trying: root (CI) and a user see the same answer.
* :func:`content_hash` / :func:`content_hash_file` — the content hash of the catalog, undo records and the rename
  journal: XXH3-128 (32 hex digits), 9-15x cheaper than SHA-256 (benchmarks/hashing.py).
  :func:`hash_matches` also checks the SHA-256 values (64 hex digits) that catalogs made before it hold.
  :func:`sha256_file` / :func:`sha256_bytes` remain for those and for tests that check files independently.
* :class:`FileOps` / :class:`NoOpFileOps` — the object the writer, undo and scan use to touch disk;
  ``--dry-run`` swaps in the no-op one (as osxphotos does) instead of branching on a flag.
* :func:`is_ltag_temp` / :func:`remove_stale_temps` — temp files left by a killed run are removed by
  the next scan of their folder (only ltag's own temp names are ever touched).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TEMP_MARK = ".ltag-tmp-"
_TEMP_RE = re.compile(r"^\..+\.ltag-tmp-[0-9a-f]{12}$", re.DOTALL)
_CHUNK = 1 << 20


# -- hashing -------------------------------------------------------------------------------------
# Identity, not security: the hash tells ltag whether a file is the one it catalogued or wrote (moved files,
# unchanged files, undo, rename). Someone able to craft a collision could simply change the file.


def content_hash(data: bytes | memoryview) -> str:
    """The content hash of ``data``: XXH3-128 as 32 lowercase hex digits."""
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


def content_hash_file(path: str | os.PathLike[str]) -> str:
    """Streaming :func:`content_hash` of a file's content (1 MiB reads)."""
    return _stream(path, hasher_for(None))


def _legacy(recorded: str) -> bool:
    """A value recorded before XXH3-128 (SHA-256: 64 hex digits)."""
    return len(recorded) == 64


def hasher_for(recorded: str | None) -> Any:
    """A streaming hash object (``update`` / ``hexdigest``) of the algorithm that made ``recorded`` (XXH3-128 for
    None: a new value)."""
    if recorded and _legacy(recorded):
        return hashlib.sha256()
    import xxhash

    return xxhash.xxh3_128()


def hash_like(recorded: str | None, data: bytes | memoryview) -> str:
    """The hash of ``data`` made with the algorithm that made ``recorded`` (XXH3-128, or SHA-256)."""
    return sha256_bytes(data) if recorded and _legacy(recorded) else content_hash(data)


def file_hash_like(recorded: str | None, path: str | os.PathLike[str]) -> str:
    """:func:`hash_like` for a file's content, streamed."""
    return _stream(path, hasher_for(recorded))


def hash_matches(recorded: str | None, data: bytes | memoryview) -> bool:
    """Whether ``data`` hashes to ``recorded``, with the algorithm that made it."""
    return bool(recorded) and hash_like(recorded, data) == recorded


def file_hash_matches(recorded: str | None, path: str | os.PathLike[str]) -> bool:
    """:func:`hash_matches` for a file's content, streamed."""
    return bool(recorded) and file_hash_like(recorded, path) == recorded


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Streaming sha256 of a file's content (1 MiB reads)."""
    return _stream(path, hashlib.sha256())


def _stream(path: str | os.PathLike[str], h: Any) -> str:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


# -- permission bits --------------------------------------------------------------------------------
def _bits_for(st: os.stat_result) -> tuple[int, int, int]:
    """(read, write, exec) bits that apply to this process, decided by ownership. root counts as the owner."""
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0 or st.st_uid == euid:
        return stat.S_IRUSR, stat.S_IWUSR, stat.S_IXUSR
    try:
        groups = set(os.getgroups()) | {os.getegid()}
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        groups = set()
    if st.st_gid in groups:
        return stat.S_IRGRP, stat.S_IWGRP, stat.S_IXGRP
    return stat.S_IROTH, stat.S_IWOTH, stat.S_IXOTH


def read_block_reason(path: str | os.PathLike[str], st: os.stat_result | None = None) -> str | None:
    """Why ``path`` must be treated as unreadable by its permission bits, or None when readable."""
    try:
        st = st or os.stat(path)
    except OSError as e:
        return e.strerror or str(e)
    r, _, x = _bits_for(st)
    if stat.S_ISDIR(st.st_mode):
        if not (st.st_mode & r) or not (st.st_mode & x):
            return "folder is not readable (permission bits)"
        return None
    if not (st.st_mode & r):
        return "file is not readable (permission bits)"
    return None


def write_block_reason(path: str | os.PathLike[str]) -> str | None:
    """Why replacing (or creating) ``path`` is not allowed by permission bits, or None when allowed.

    The file must carry the write bit that applies to us (owner bit for its owner and for root),
    and its folder must be writable and searchable (an atomic replace creates a file there).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        return e.strerror or str(e)
    if st is not None:
        _, w, _ = _bits_for(st)
        if not (st.st_mode & w):
            return "file is read-only (permission bits)"
    try:
        dst = os.stat(folder)
    except OSError as e:
        return f"folder: {e.strerror or e}"
    _, w, x = _bits_for(dst)
    if not (dst.st_mode & w) or not (dst.st_mode & x):
        return "folder is read-only (permission bits)"
    return None


def is_writable_by_bits(path: str | os.PathLike[str]) -> bool:
    """True when permission bits allow ltag to replace ``path`` (same answer for root and users)."""
    return write_block_reason(path) is None


# -- signals -------------------------------------------------------------------------------------
@contextlib.contextmanager
def deferred_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT/SIGTERM during a critical section and deliver them after it.

    Only possible in the main thread; elsewhere this is a no-op (a kill -9 is never deferrable anyway:
    atomicity of ``os.replace`` is what protects the file then).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    old: dict[int, object] = {}

    def _hold(signum: int, _frame: object) -> None:
        received.append(signum)

    try:
        for s in signums:
            old[s] = signal.signal(s, _hold)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        for s, h in old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        for s in received:
            signal.raise_signal(s)


# -- atomic write ------------------------------------------------------------------------------------
def temp_path_for(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{TEMP_MARK}{secrets.token_hex(6)}")


def is_ltag_temp(name: str) -> bool:
    """True for ltag's own temp file names (``.{name}.ltag-tmp-{12 hex}``) and nothing else."""
    return bool(_TEMP_RE.match(name))


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, keep_mtime: bool = False,
                 mode_from: str | os.PathLike[str] | None = None,
                 tail_from: tuple[int, int] | None = None) -> None:
    """Replace (or create) ``path`` with ``data`` atomically.

    Args:
        path: the target file.
        data: its new content.
        keep_mtime: keep the target's access/modification times (when it exists).
        mode_from: the file whose permission bits (and owner, best effort) the new file gets;
            default the target itself. A new file without ``mode_from`` gets 0o666 minus the umask.
        tail_from: ``(fd, offset)``: after ``data``, append the bytes of the open file ``fd`` from ``offset``
            to its end, copied inside the kernel (``os.copy_file_range``). A keyword edit then writes a
            JPEG's new header (``metadata.read_jpeg_head`` + ``metadata.rewrite_jpeg``) followed by its
            untouched image data without passing ~10 MB through Python.

    Raises:
        OSError: nothing was changed (the temp file, if any, is removed).
    """
    path = os.fspath(path)
    try:
        st = os.stat(os.fspath(mode_from) if mode_from is not None else path)
    except FileNotFoundError:
        st = None
    times = None
    if keep_mtime:
        try:
            tst = os.stat(path)
            times = (tst.st_atime_ns, tst.st_mtime_ns)
        except FileNotFoundError:
            times = None
    tmp = temp_path_for(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666 if st is None else 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if tail_from is not None:
                _copy_tail(tail_from[0], tail_from[1], fd)
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                with contextlib.suppress(OSError, AttributeError):
                    os.fchown(fd, st.st_uid, st.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        if times is not None:
            os.utime(tmp, ns=times)
        with deferred_signals():
            os.replace(tmp, path)
            _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_tail(src: int, offset: int, dst: int) -> None:
    """Append ``src[offset:]`` to ``dst`` (in-kernel copy where the platform has one)."""
    remaining = os.fstat(src).st_size - offset
    copy_range = getattr(os, "copy_file_range", None)
    while remaining > 0:
        n = 0
        if copy_range is not None:
            try:
                n = copy_range(src, dst, remaining, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                copy_range = None
                continue
        else:
            chunk = os.pread(src, min(remaining, _CHUNK), offset)
            view = memoryview(chunk)
            while view:
                w = os.write(dst, view)
                view = view[w:]
            n = len(chunk)
        if n <= 0:
            raise OSError(errno.EIO, "source file shrank while its tail was being copied")
        offset += n
        remaining -= n


def remove_file(path: str | os.PathLike[str]) -> None:
    """Delete a file ltag created (a sidecar being undone) and fsync its folder."""
    path = os.fspath(path)
    with deferred_signals():
        os.unlink(path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))


def remove_stale_temps(folder: str, names: list[str] | None = None) -> list[str]:
    """Remove ltag temp files (``.*.ltag-tmp-*``) that a killed run left in ``folder``; returns their paths."""
    removed: list[str] = []
    if names is None:
        try:
            names = [e.name for e in os.scandir(folder)]
        except OSError:
            return removed
    for name in names:
        if not is_ltag_temp(name):
            continue
        p = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(p).st_mode):
                os.unlink(p)
                removed.append(p)
        except OSError as e:
            if e.errno != errno.ENOENT:
                continue
    return removed


# -- injected file operations (real / dry run) ----------------------------------------------------------
class FileOps:
    """The real thing: every change to the archive goes through one of these methods."""

    dry_run = False

    def atomic_write(self, path: str, data: bytes, *, keep_mtime: bool = False,
                     mode_from: str | None = None, tail_from: tuple[int, int] | None = None) -> None:
        atomic_write(path, data, keep_mtime=keep_mtime, mode_from=mode_from, tail_from=tail_from)

    def remove(self, path: str) -> None:
        remove_file(path)

    def remove_stale_temps(self, folder: str, names: list[str] | None = None) -> list[str]:
        return remove_stale_temps(folder, names)


@dataclass
class NoOpFileOps(FileOps):
    """``--dry-run``: records what would be written and touches nothing."""

    dry_run = True
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (op, path, bytes)

    def atomic_write(self, path: str, data: bytes, *, keep_mtime: bool = False,
                     mode_from: str | None = None, tail_from: tuple[int, int] | None = None) -> None:
        tail = os.fstat(tail_from[0]).st_size - tail_from[1] if tail_from is not None else 0
        self.log.append(("write", path, len(data) + tail))

    def remove(self, path: str) -> None:
        self.log.append(("remove", path, 0))

    def remove_stale_temps(self, folder: str, names: list[str] | None = None) -> list[str]:
        return []
