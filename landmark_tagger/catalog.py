"""The SQLite catalog (via sqlite-utils): one row per file, runs, the undo store.

Schema ownership:
- this module: ``photos``, ``embeddings``, ``runs``, ``changes``, ``meta``;
- ``search.py`` adds the FTS5 index (``ensure_search_schema``);
- ``rename.py`` adds the rename journal (``ensure_rename_schema``).

The database runs in WAL mode with ``synchronous=NORMAL``: a crash or kill -9 loses at most the
last uncommitted transaction, never finished work that was committed. Callers commit per batch of
files so that a killed scan resumes where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landmark_tagger.errors import CatalogError

SCHEMA_VERSION = 2  # 2: content hashes are XXH3-128 and their columns say so (were sha256 columns)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- absolute, as os.fsdecode gives it
    folder TEXT NOT NULL,
    name TEXT NOT NULL,                 -- file name with extension
    stem TEXT NOT NULL,
    ext TEXT NOT NULL,                  -- with original case, no dot
    group_key TEXT NOT NULL,            -- folder + '/' + stem (casefolded): JPEG+RAW of one photo share it
    role TEXT NOT NULL DEFAULT 'primary', -- 'primary' (recognised) or 'companion' (tagged from its group's primary)
    kind TEXT NOT NULL,                 -- jpeg | raw | png | tiff | heic | other
    size INTEGER,
    mtime_ns INTEGER,
    content_hash TEXT,                  -- XXH3-128 hex (SHA-256 hex in rows from before schema 2)
    width INTEGER,
    height INTEGER,
    taken_at TEXT,                      -- capture time, ISO 8601 local time 'YYYY-MM-DDTHH:MM:SS'
    camera_make TEXT,
    camera_model TEXT,
    camera TEXT,                        -- display name, e.g. 'Nikon D90'
    lens TEXT,
    gps_lat REAL,
    gps_lon REAL,
    gps_alt REAL,
    country TEXT,
    country_code TEXT,
    region TEXT,
    city TEXT,
    landmark TEXT,                      -- display name; NULL when unknown
    label TEXT,                         -- bundle label id or 'user:<name>'
    confidence REAL,                    -- the confidence that decided the tag (bundle scale, [0, 1])
    own_confidence REAL,                -- the photo's own confidence before sequence consensus
    decided_by TEXT,                    -- 'model' | 'user_gallery' | 'sequence' | 'correction'
    model_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending', -- tagged | unknown | failed | pending
    error TEXT,
    keywords TEXT NOT NULL DEFAULT '[]',      -- JSON: every keyword in the file (any tool), flat
    hier_keywords TEXT NOT NULL DEFAULT '[]', -- JSON: lr:hierarchicalSubject values in the file
    ltag_keywords TEXT NOT NULL DEFAULT '[]', -- JSON: keywords ltag wants written (flat + hierarchical)
    owned_keywords TEXT NOT NULL DEFAULT '[]',-- JSON: keywords ltag has written and still owns
    suppressed_keywords TEXT NOT NULL DEFAULT '[]', -- JSON: ltag keywords the user deleted; never re-added
    write_status TEXT NOT NULL DEFAULT 'none', -- none | pending | written | readonly | failed | undone
    write_target TEXT,                  -- the file that carries the keywords (the photo or its sidecar)
    written_at TEXT,
    scanned_at TEXT
);
CREATE INDEX IF NOT EXISTS photos_group ON photos(group_key);
CREATE INDEX IF NOT EXISTS photos_sha ON photos(content_hash);
CREATE INDEX IF NOT EXISTS photos_folder ON photos(folder);
CREATE INDEX IF NOT EXISTS photos_taken ON photos(taken_at);

CREATE TABLE IF NOT EXISTS embeddings (
    photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    embedding BLOB NOT NULL,            -- float32 (D,) recognition embedding
    generic BLOB                        -- float32 (G,) generic backbone features
);

CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- scan | write | rename | learn | undo
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running', -- running | done | interrupted | undone
    args TEXT,                          -- JSON
    summary TEXT                        -- JSON
);

CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    path TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- jpeg-delta (bytes ltag replaced) | jpeg-header (old) | sidecar | file-created
    before_hash TEXT,                   -- content hash (fsutil.hash_matches); NULL when the file did not exist
    after_hash TEXT,
    before_size INTEGER,
    undo BLOB,                          -- zlib: what is needed to rebuild the old bytes
    state TEXT NOT NULL DEFAULT 'pending', -- pending (recorded, not yet applied) | applied | undone | abandoned (never applied)
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_run ON changes(run_id);
CREATE INDEX IF NOT EXISTS changes_path ON changes(path);

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class Catalog:
    """A handle on the catalog database. Use :func:`open_catalog`."""

    def __init__(self, path: Path | str, conn: sqlite3.Connection):
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self.conn = conn
        self._db: Any = None

    @property
    def db(self) -> Any:
        """A ``sqlite_utils.Database`` on the same connection (imported on first use: it costs ~0.25 s of start-up
        that a rescan of unchanged files does not need)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit on success, roll back on error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          (key, value))

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, kind: str, args: dict[str, Any] | None = None) -> int:
        cur = self.conn.execute("INSERT INTO runs(kind, started_at, args) VALUES(?, ?, ?)",
                                (kind, now_iso(), json.dumps(args or {}, default=str)))
        self.conn.commit()
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, summary: dict[str, Any] | None = None, status: str = "done") -> None:
        self.conn.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                          (now_iso(), status, json.dumps(summary or {}, default=str), run_id))
        self.conn.commit()

    # -- photos ---------------------------------------------------------------------------------
    def photo_by_path(self, path: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM photos WHERE path = ?", (path,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    # sqlite3 in autocommit mode (isolation_level=None): transactions are explicit (Catalog.transaction)
    return conn


# Schema 1 -> 2: (table, old column, new column). The values stay: SHA-256 hex is told apart by its length.
_RENAMED = (("photos", "sha256", "content_hash"), ("changes", "before_sha256", "before_hash"),
            ("changes", "after_sha256", "after_hash"), ("rename_moves", "sha256", "content_hash"))


def _rename_columns(conn: sqlite3.Connection, renames: tuple[tuple[str, str, str], ...]) -> None:
    """Rename the columns of an older catalog's tables that still have their old names (indexes follow)."""
    for table, old, new in renames:
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if old in cols and new not in cols:
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate every table of the catalog (idempotent)."""
    _rename_columns(conn, _RENAMED)
    conn.executescript(_SCHEMA)
    # Tables owned by other modules; imported lazily to keep start-up fast.
    try:
        from landmark_tagger.search import ensure_search_schema
    except ImportError:
        pass
    else:
        ensure_search_schema(conn)
    try:
        from landmark_tagger.rename import ensure_rename_schema
    except ImportError:
        pass
    else:
        ensure_rename_schema(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def open_catalog(path: Path | str, *, create: bool = True) -> Catalog:
    """Open (and create if needed) the catalog at ``path``.

    Raises:
        CatalogError: the catalog does not exist (``create=False``), its folder cannot be
            created, or the file is not an ltag catalog.
    """
    p = Path(path) if str(path) != ":memory:" else None
    if p is not None:
        if not p.exists() and not create:
            raise CatalogError(f"No catalog at {p}. Run `ltag scan PATH` first, or pass --db FILE.")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CatalogError(f"Cannot create the catalog folder {p.parent}: {e.strerror}") from e
    try:
        conn = _connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(f"The catalog {path} was made by a newer ltag (schema {version}); upgrade ltag.")
        ensure_schema(conn)
    except sqlite3.DatabaseError as e:
        raise CatalogError(f"Cannot open the catalog {path}: {e}. Pass --db FILE to use another one.") from e
    return Catalog(path, conn)
