"""``ltag undo``: one history of runs that changed files, newest first; byte-exact restores.

* A run is undoable when it is a ``scan`` or ``write`` with applied changes, or a ``rename`` batch
  (dispatched to :func:`landmark_tagger.rename.undo_rename`), and it has not been undone.
* JPEG (``jpeg-delta``): the current file's content hash must equal what ltag wrote (``after_hash``); otherwise
  another program changed it since and it is reported and skipped (``force=True`` restores anyway, as long as
  the result is byte-exact: when the other program changed only the region ltag rewrote). The old file is
  rebuilt from the current one and the recorded delta (the bytes ltag replaced: its XMP/IPTC segments) and
  must hash to ``before_hash`` before it replaces the file (atomically). Older ``jpeg-header`` records
  (the whole old header) are rebuilt as ``old header + current[current_header_end:]``.
* Sidecar: its old bytes are restored; a sidecar ltag created is deleted.
* A change left ``pending`` by a killed run (recorded, maybe not applied) is settled first by the file's
  current hash (:func:`resolve_pending`): the new content -> ``applied``, the old -> ``abandoned``.
* The catalog follows: restored photos get their stat, hash and keyword columns from the restored file,
  ``write_status='undone'`` (a rescan does not re-write them; ``ltag write`` does).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from landmark_tagger import fsutil
from landmark_tagger.catalog import Catalog, now_iso
from landmark_tagger.errors import LtagError, UndoError

log = logging.getLogger(__name__)

UNDOABLE_KINDS = ("scan", "write", "rename")


@dataclass
class UndoReport:
    runs: list[int] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # sidecars ltag had created
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): changed since, missing
    failed: list[tuple[str, str]] = field(default_factory=list)
    renames: list[Any] = field(default_factory=list)  # results of rename.undo_rename
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if (self.failed or self.skipped) else 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def resolve_pending(catalog: Catalog) -> int:
    """Settle changes a killed run left ``pending`` and mark its run ``interrupted``. Returns how many changes."""
    conn = catalog.conn
    for rid, args in conn.execute("SELECT id, args FROM runs WHERE status = 'running' AND kind NOT IN ('rename', 'undo')"
                                  ).fetchall():
        try:
            pid = int(json.loads(args or "{}").get("pid") or 0)
        except (ValueError, TypeError, AttributeError):
            pid = 0
        if pid and pid != os.getpid() and _pid_alive(pid):
            continue  # another ltag is running right now
        if pid == os.getpid():
            continue
        conn.execute("UPDATE runs SET status = 'interrupted', finished_at = ? WHERE id = ?", (now_iso(), rid))
    n = 0
    for cid, path, before, after in conn.execute(
            "SELECT c.id, c.path, c.before_hash, c.after_hash FROM changes c JOIN runs r ON r.id = c.run_id "
            "WHERE c.state = 'pending' AND r.status != 'running'").fetchall():
        try:
            cur = fsutil.file_hash_like(after or before, path)  # both made by one algorithm
        except FileNotFoundError:
            cur = None
        except OSError:
            continue
        if cur is not None and cur == after:
            state = "applied"
        elif cur == before:  # also: file absent and it did not exist before
            state = "abandoned"
        else:
            continue  # changed by something else: leave it for undo to report
        conn.execute("UPDATE changes SET state = ? WHERE id = ?", (state, cid))
        n += 1
    return n


def history(catalog: Catalog) -> list[dict[str, Any]]:
    """Undoable runs, newest first: ``{id, kind, started_at, status, changes}``: every run that changed files
    through the writer, whatever its kind (``scan``, ``write``, ``learn``/``review`` corrections, ...), and rename
    batches -- one history."""
    return catalog.rows(
        "SELECT r.id, r.kind, r.started_at, r.status, "
        "(SELECT COUNT(*) FROM changes c WHERE c.run_id = r.id AND c.state IN ('applied', 'pending')) AS changes "
        "FROM runs r WHERE r.status != 'undone' AND ((r.kind NOT IN ('rename', 'undo') AND EXISTS "
        "(SELECT 1 FROM changes c WHERE c.run_id = r.id AND c.state IN ('applied', 'pending'))) OR r.kind = 'rename') "
        "ORDER BY r.id DESC")


def undo(catalog: Catalog, *, run_id: int | None = None, all: bool = False, force: bool = False,  # noqa: A002
         rename: bool = False, batch: int | None = None, fileops: fsutil.FileOps | None = None) -> UndoReport:
    """Revert the most recent run that changed files (or ``run_id``, or ``all`` of them, newest first).

    ``rename=True`` limits the choice to rename batches (``batch`` picks one). Raises :class:`UndoError`
    when there is nothing to undo or the run is unknown.
    """
    fileops = fileops or fsutil.FileOps()
    report = UndoReport(dry_run=fileops.dry_run)
    if not fileops.dry_run:
        resolve_pending(catalog)
    runs = history(catalog)
    if batch is not None:
        run_id, rename = batch, True
    if rename:
        runs = [r for r in runs if r["kind"] == "rename"]
    if run_id is not None:
        chosen = [r for r in runs if r["id"] == run_id]
        if not chosen:
            row = catalog.rows("SELECT id, kind, status FROM runs WHERE id = ?", (run_id,))
            if not row:
                raise UndoError(f"There is no run {run_id}. `ltag undo --list` shows the runs that can be undone.")
            raise UndoError(f"Run {run_id} ({row[0]['kind']}, {row[0]['status']}) has no changes to undo.")
    elif all:
        chosen = runs
    else:
        chosen = runs[:1]
    if not chosen:
        raise UndoError("Nothing to undo: no run has changed any file." if not rename
                        else "Nothing to undo: no rename batch.")
    undo_run = None if fileops.dry_run else catalog.start_run("undo", {"runs": [r["id"] for r in chosen],
                                                                       "force": force, "pid": os.getpid()})
    for r in chosen:
        report.runs.append(r["id"])
        if r["kind"] == "rename":
            from landmark_tagger import rename as rename_mod

            if not hasattr(rename_mod, "undo_rename"):
                raise UndoError("This ltag cannot undo rename batches (rename.undo_rename is missing).")
            if fileops.dry_run:
                report.renames.append(f"would undo rename batch {r['id']}")
                continue
            try:
                res = rename_mod.undo_rename(catalog, r["id"])
            except LtagError as e:
                if len(chosen) == 1:
                    raise
                report.skipped.append((f"rename batch {r['id']}", str(e)))
                continue
            report.renames.append(res)
            report.skipped.extend((str(p), str(why)) for p, why in getattr(res, "problems", []) or [])
            continue
        _undo_run(catalog, r["id"], force, fileops, report)
    if undo_run is not None:
        catalog.finish_run(undo_run, {"runs": report.runs, "restored": len(report.restored),
                                      "deleted": len(report.deleted), "skipped": len(report.skipped),
                                      "failed": len(report.failed)})
    return report


def _undo_run(catalog: Catalog, run_id: int, force: bool, fileops: fsutil.FileOps, report: UndoReport) -> None:
    conn = catalog.conn
    changes = catalog.rows("SELECT * FROM changes WHERE run_id = ? AND state IN ('applied', 'pending') "
                           "ORDER BY id DESC", (run_id,))
    left = 0
    row = conn.execute("SELECT args FROM runs WHERE id = ?", (run_id,)).fetchone()
    try:
        run_args = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        run_args = {}
    # A run that kept its JPEGs' modification times (--keep-mtime) is undone the same way: the file gets its
    # old bytes and keeps the mtime it had all along.
    keep_mtime = bool(isinstance(run_args, dict) and run_args.get("keep_mtime"))
    for ch in changes:
        path = ch["path"]
        try:
            outcome = _undo_change(ch, force, fileops, keep_mtime=keep_mtime and ch["kind"].startswith("jpeg"))
        except (LtagError, OSError) as e:
            msg = str(e) if isinstance(e, LtagError) else f"{e.strerror or e}"
            report.failed.append((path, msg))
            left += 1
            continue
        kind, reason = outcome
        if kind == "skipped":
            report.skipped.append((path, reason))
            left += 1
            continue
        (report.deleted if kind == "deleted" else report.restored).append(path)
        if not fileops.dry_run:
            conn.execute("UPDATE changes SET state = 'undone' WHERE id = ?", (ch["id"],))
            _update_rows(catalog, path, deleted=(kind == "deleted"))
    if not fileops.dry_run and left == 0:
        conn.execute("UPDATE runs SET status = 'undone' WHERE id = ?", (run_id,))


def _undo_change(ch: dict[str, Any], force: bool, fileops: fsutil.FileOps, *,
                 keep_mtime: bool = False) -> tuple[str, str]:
    """Restore one change. Returns (restored | deleted | skipped, reason)."""
    from landmark_tagger import metadata

    path = ch["path"]
    before, after = ch["before_hash"], ch["after_hash"]
    try:
        with open(path, "rb") as f:
            cur = f.read()
    except FileNotFoundError:
        if before is None:
            return "deleted", "already gone"
        return "skipped", "the file is missing (moved or deleted since ltag wrote it)"
    cur_sha = fsutil.hash_like(after or before, cur)
    if cur_sha == before:
        return "restored", "already as before"
    if cur_sha != after and not force:
        return "skipped", "changed by another program since ltag wrote it (use --force to restore anyway)"
    if ch["kind"] == "file-created":
        fileops.remove(path)
        return "deleted", ""
    if ch["undo"] is None:
        raise UndoError(f"{path}: no undo data recorded")
    if ch["kind"] == "jpeg-delta":
        from landmark_tagger.writer import apply_delta

        try:
            new = apply_delta(cur, ch["undo"])
        except (ValueError, zlib.error) as e:
            raise UndoError(f"{os.path.basename(path)}: cannot restore ({e}); left as it is") from None
        if not fsutil.hash_matches(before, new):
            raise UndoError(f"{os.path.basename(path)}: cannot restore byte-exact (changed outside the metadata "
                            "ltag wrote since); left as it is")
        return _restore(path, new, fileops, keep_mtime)
    old = zlib.decompress(ch["undo"])
    if ch["kind"] == "jpeg-header":
        try:
            end = metadata.jpeg_header_end(cur)
        except LtagError as e:
            raise UndoError(f"{os.path.basename(path)}: not a readable JPEG any more ({e})") from None
        new = old + cur[end:]
    else:  # sidecar
        new = old
    if not fsutil.hash_matches(before, new):
        raise UndoError(f"{os.path.basename(path)}: cannot restore byte-exact (its image data changed since); "
                        "left as it is")
    return _restore(path, new, fileops, keep_mtime)


def _restore(path: str, new: bytes, fileops: fsutil.FileOps, keep_mtime: bool = False) -> tuple[str, str]:
    if not fileops.dry_run and not fsutil.is_writable_by_bits(path):
        raise UndoError(f"{os.path.basename(path)}: {fsutil.write_block_reason(path)}")
    fileops.atomic_write(path, new, keep_mtime=keep_mtime)
    return "restored", ""


def _update_rows(catalog: Catalog, target: str, *, deleted: bool) -> None:
    """After a restore: the photo rows whose keywords live in ``target`` reflect the restored file."""
    from landmark_tagger import metadata

    conn = catalog.conn
    rows = catalog.rows("SELECT id, path FROM photos WHERE write_target = ? OR path = ?", (target, target))
    if not rows:
        return
    flat: list[str] = []
    hier: list[str] = []
    owned: list[str] = []
    if not deleted:
        try:
            st = metadata.read_keywords(target)
            flat, hier, owned = list(st.flat), list(st.hierarchical), list(st.owned)
        except LtagError:
            pass
    for r in rows:
        cols: dict[str, Any] = {"keywords": json.dumps(flat), "hier_keywords": json.dumps(hier),
                                "owned_keywords": json.dumps(owned), "write_status": "undone", "written_at": None}
        if r["path"] == target:
            try:
                nst = os.stat(target)
                cols.update(size=nst.st_size, mtime_ns=nst.st_mtime_ns, content_hash=fsutil.content_hash_file(target))
            except OSError:
                pass
        sets = ", ".join(f"{k} = ?" for k in cols)
        conn.execute(f"UPDATE photos SET {sets} WHERE id = ?", [*cols.values(), r["id"]])
