"""Full-text search over the catalog: an FTS5 index kept in sync by triggers, a small query
language that never leaks FTS syntax errors, filters, and ``stats``.

Design (see docs/search.md):

- ``photos_fts`` is a *contentless* FTS5 table (``tokenize = "unicode61 remove_diacritics 2"``,
  prefix indexes 2 and 3) over landmark, places, keywords, file name, camera and lens, plus a
  hidden ``flags`` column (``zzall``, ``zzstatus<status>``, ``zzwrite<write_status>``) that turns
  the status filters into index terms.
- Its rowid is a **sort key**, not the photo id: ``(2**32 - 1 - capture seconds) << 30 | photos.id``;
  the seconds are counted *backwards* from 2106, so newest first is ``ORDER BY rowid`` (ascending),
  the order in which FTS5 streams its posting lists, so the first page of a query that matches half a million photos is read without
  sorting anything. ``photos.id = rowid & (2**30 - 1)``; ``--since/--until`` become rowid ranges.
- Triggers on ``photos`` (insert / update of an indexed column / delete) keep the index in sync, so
  writers of ``photos`` never call this module.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import sqlite3
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from landmark_tagger.errors import LtagError

SEARCH_SCHEMA_VERSION = "4"
ID_BITS = 30
ID_MASK = (1 << ID_BITS) - 1
_SEC_LIMIT = (1 << 32) - 1          # capture times are clamped to 1834..2106
_NO_DATE = -(1 << 32)               # photos without a capture time sort after every dated one
# key = ((_SEC_LIMIT - seconds) << ID_BITS) | id: ascending rowid = newest first. FTS5 streams a posting
# list in ascending rowid order (descending order makes it load and reverse whole doclists: ~0.15 us a
# match, 80 ms for a term matching half of 1M photos), so the default sort reads only the first page.

SORTS = ("date", "confidence", "path")

#: user text may only address these columns (never ``flags``)
TEXT_COLUMNS = ("landmark", "places", "keywords", "name", "camera", "lens")


class SearchError(LtagError):
    """A search query cannot be understood."""


# --------------------------------------------------------------------------------------------
# schema


def _key_sql(r: str) -> str:
    sec = f"CAST(strftime('%s', {r}.taken_at) AS INTEGER)"
    return f"((({_SEC_LIMIT}) - COALESCE(max(min({sec}, {_SEC_LIMIT}), -{_SEC_LIMIT}), {_NO_DATE})) << {ID_BITS} | {r}.id)"


def _json_text(expr: str) -> str:
    return f"COALESCE((SELECT group_concat(value, ' ') FROM json_each(CASE WHEN json_valid({expr}) THEN {expr} ELSE '[]' END)), '')"


def _values_sql(r: str) -> str:
    places = f"trim(COALESCE({r}.country, '') || ' ' || COALESCE({r}.region, '') || ' ' || COALESCE({r}.city, ''))"
    keywords = (f"{_json_text(f'{r}.keywords')} || ' ' || {_json_text(f'{r}.hier_keywords')} || ' ' || "
                f"{_json_text(f'{r}.ltag_keywords')}")
    camera = f"COALESCE({r}.camera, trim(COALESCE({r}.camera_make, '') || ' ' || COALESCE({r}.camera_model, '')))"
    flags = (f"'zzall zzstatus' || {r}.status || ' zzwrite' || {r}.write_status || "
             f"COALESCE(' zzconf' || CAST(max(min({r}.confidence, 1.0), 0.0) * 10 AS INTEGER) || "
             f"' zzcp' || CAST(max(min({r}.confidence, 1.0), 0.0) * 100 AS INTEGER), ' zzcpnone')")
    return (f"{_key_sql(r)}, COALESCE({r}.landmark, ''), {places}, {keywords}, {r}.name, {camera}, "
            f"COALESCE({r}.lens, ''), {r}.folder, {flags}")


_INDEXED = ("id", "taken_at", "folder", "confidence", "landmark", "country", "region", "city", "keywords", "hier_keywords", "ltag_keywords",
            "name", "camera", "camera_make", "camera_model", "lens", "status", "write_status")
_COLS = "rowid, landmark, places, keywords, name, camera, lens, folder, flags"


def _text_sql(r: str) -> str:
    """The searchable text of a row (the user-searchable columns), for the vocabulary stage."""
    places = f"COALESCE({r}.country, '') || ' ' || COALESCE({r}.region, '') || ' ' || COALESCE({r}.city, '')"
    keywords = (f"{_json_text(f'{r}.keywords')} || ' ' || {_json_text(f'{r}.hier_keywords')} || ' ' || "
                f"{_json_text(f'{r}.ltag_keywords')}")
    return (f"COALESCE({r}.landmark, '') || ' ' || {places} || ' ' || {keywords} || ' ' || {r}.name || ' ' || "
            f"COALESCE({r}.camera, '') || ' ' || COALESCE({r}.camera_make, '') || ' ' || "
            f"COALESCE({r}.camera_model, '') || ' ' || COALESCE({r}.lens, '')")


_TOKENIZE = "tokenize = 'unicode61 remove_diacritics 2'"


def _schema_statements() -> list[str]:
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _INDEXED)
    return [
        "CREATE VIRTUAL TABLE IF NOT EXISTS photos_fts USING fts5("
        f"landmark, places, keywords, name, camera, lens, folder, flags, content = '', {_TOKENIZE}, prefix = '2 3')",
        # the vocabulary of the text columns, for prefix expansion: search_vocab holds every term; new rows'
        # text goes to a small staging index first (folded into search_vocab by the next search or rebuild)
        "CREATE TABLE IF NOT EXISTS search_vocab (term TEXT PRIMARY KEY) WITHOUT ROWID",
        f"CREATE VIRTUAL TABLE IF NOT EXISTS photos_fts_stage USING fts5(t, content = '', detail = none, {_TOKENIZE})",
        "CREATE VIRTUAL TABLE IF NOT EXISTS photos_fts_stage_v USING fts5vocab(photos_fts_stage, 'row')",
        "CREATE VIRTUAL TABLE IF NOT EXISTS photos_fts_v USING fts5vocab(photos_fts, 'row')",
        f"CREATE TRIGGER IF NOT EXISTS photos_fts_ai AFTER INSERT ON photos BEGIN "
        f"INSERT INTO photos_fts({_COLS}) VALUES ({_values_sql('new')}); "
        f"INSERT INTO photos_fts_stage(t) VALUES ({_text_sql('new')}); END",
        f"CREATE TRIGGER IF NOT EXISTS photos_fts_ad AFTER DELETE ON photos BEGIN "
        f"INSERT INTO photos_fts(photos_fts, {_COLS}) VALUES ('delete', {_values_sql('old')}); END",
        f"CREATE TRIGGER IF NOT EXISTS photos_fts_au AFTER UPDATE ON photos WHEN {changed} BEGIN "
        f"INSERT INTO photos_fts(photos_fts, {_COLS}) VALUES ('delete', {_values_sql('old')}); "
        f"INSERT INTO photos_fts({_COLS}) VALUES ({_values_sql('new')}); "
        f"INSERT INTO photos_fts_stage(t) VALUES ({_text_sql('new')}); END",
    ]


_TRIGGERS = ("photos_fts_ai", "photos_fts_ad", "photos_fts_au")


def ensure_search_schema(conn: sqlite3.Connection) -> None:
    """Create the FTS index and its triggers (idempotent; rebuilds the index when its version changed)."""
    if _search_schema_current(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _search_schema_current(conn):  # another process made it meanwhile
            conn.rollback()
            return
        for t in _TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {t}")
        for t in ("photos_fts_v", "photos_fts_stage_v", "photos_fts_stage", "search_vocab", "photos_fts"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        for stmt in _schema_statements():
            conn.execute(stmt)
        _fill(conn)
        conn.execute("INSERT INTO meta(key, value) VALUES('search_schema', ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (SEARCH_SCHEMA_VERSION,))
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _search_schema_current(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'search_schema'").fetchone()
    if not row or row[0] != SEARCH_SCHEMA_VERSION:
        return False
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'photos_fts%'")}
    return "photos_fts" in have and all(t in have for t in _TRIGGERS)


def _fill(conn: sqlite3.Connection) -> None:
    conn.execute(f"INSERT INTO photos_fts({_COLS}) SELECT {_values_sql('p')} FROM photos p")
    conn.execute("INSERT OR IGNORE INTO search_vocab(term) SELECT term FROM photos_fts_v")


def drop_search_triggers(conn: sqlite3.Connection) -> None:
    """For bulk loads: drop the triggers; call :func:`rebuild_search_index` afterwards."""
    for t in _TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")


def rebuild_search_index(conn: sqlite3.Connection) -> None:
    """Rebuild the index from ``photos`` and (re)create the triggers."""
    conn.execute("DELETE FROM meta WHERE key = 'search_schema'")
    ensure_search_schema(conn)


# --------------------------------------------------------------------------------------------
# sort keys and dates


def _epoch(value: str, *, end: bool) -> int:
    """Seconds (naive capture time read as UTC, as the index does) of a date or date-time."""
    v = value.strip()
    try:
        if re.fullmatch(r"\d{4}", v):
            d = datetime(int(v) + (1 if end else 0), 1, 1)
        elif re.fullmatch(r"\d{4}-\d{2}", v):
            y, m = map(int, v.split("-"))
            d = datetime(y + (m == 12 and end), (m % 12) + 1 if end else m, 1)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            d0 = date.fromisoformat(v)
            d = datetime(d0.year, d0.month, d0.day)
            if end:
                return calendar.timegm(d.timetuple()) + 86400
        else:
            d = datetime.fromisoformat(v.replace(" ", "T")).replace(tzinfo=None)
            if end:
                return calendar.timegm(d.timetuple()) + 1
    except ValueError as e:
        raise SearchError(f"Cannot read the date {value!r}: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS.") from e
    return calendar.timegm(d.timetuple())


def date_range_keys(since: str | None, until: str | None) -> tuple[int, int]:
    """Rowid bounds (inclusive) for a capture-date range; ``until`` includes its whole day/month/year."""
    lo = 0
    hi = (1 << 63) - 1
    if since:   # seconds >= s  <=>  key <= (L - s) << BITS | MASK
        s = max(min(_epoch(since, end=False), _SEC_LIMIT), -_SEC_LIMIT)
        hi = ((_SEC_LIMIT - s) << ID_BITS) | ID_MASK
    if until:   # seconds <= u - 1  <=>  key >= (L - u + 1) << BITS
        u = max(min(_epoch(until, end=True), _SEC_LIMIT + 1), -_SEC_LIMIT + 1)
        lo = (_SEC_LIMIT - u + 1) << ID_BITS
    return lo, hi


# --------------------------------------------------------------------------------------------
# the query language

_WORD_CHARS = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")


def _tokens(text: str) -> list[str]:
    """Split text into the word tokens FTS sees (letters and digits; everything else separates)."""
    text = unicodedata.normalize("NFC", text)
    return _WORD_CHARS.findall(text)


def _fts_phrase(tokens: Sequence[str], prefix: bool) -> str:
    # "a" + "b" + "c"* : a phrase whose last token may be a prefix
    parts = ['"' + t.replace('"', '""') + '"' for t in tokens]
    if prefix:
        parts[-1] += "*"
    return " + ".join(parts)


@dataclass
class _Term:
    tokens: list[str]
    prefix: bool
    negated: bool = False


@dataclass
class ParsedQuery:
    """A user query as clauses (AND of ORs) plus negated terms."""

    clauses: list[list[_Term]] = field(default_factory=list)
    excluded: list[_Term] = field(default_factory=list)

    def fts(self, columns: Sequence[str] = TEXT_COLUMNS, expander: _Expander | None = None) -> str | None:
        """The FTS5 MATCH expression, or None when the query is empty."""
        colspec = "{" + " ".join(columns) + "}"

        def term(t: _Term) -> str:
            if t.prefix and expander is not None:
                return expander.prefix_expr(t.tokens)
            return _fts_phrase(t.tokens, t.prefix)

        pos = []
        for clause in self.clauses:
            pos.append("(" + " OR ".join(f"({term(t)})" for t in clause) + ")")
        if not pos and not self.excluded:
            return None
        expr = f"{colspec} : ({' AND '.join(pos)})" if pos else "flags : zzall"
        for t in self.excluded:
            expr = f"({expr}) NOT ({colspec} : ({term(t)}))"
        return expr


_NATIVE_PREFIX_CHARS = 3     # the prefix indexes ('2 3') serve prefixes up to this many characters
_MAX_EXPANSIONS = 64


class _Expander:
    """Prefix terms through the vocabulary.

    FTS5 answers a prefix longer than its prefix indexes by merging the posting lists of every matching
    term in memory (~0.2 us per match: 100+ ms for a word on half of 1M photos), whereas an OR of exact
    terms streams in rowid order. So ``eiffel`` becomes ``"eiffel" OR "eiffels"`` ... from ``search_vocab``
    (plus the staging index of rows written since), and the native prefix query is used only for short
    prefixes (which have their own index) or when a prefix has more than 64 terms.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._stage: bool | None = None

    def fold(self, text: str) -> list[str]:
        """The tokens FTS5 makes of ``text`` (same tokenizer: case and diacritics folded), in order."""
        c = self.conn
        c.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.ltag_fold USING fts5(t, {_TOKENIZE})")
        c.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.ltag_fold_v USING fts5vocab(temp, ltag_fold, 'instance')")
        c.execute("INSERT INTO temp.ltag_fold(rowid, t) VALUES (1, ?)", (text,))
        try:
            return [r[0] for r in c.execute("SELECT term FROM temp.ltag_fold_v ORDER BY offset")]
        finally:
            c.execute("DELETE FROM temp.ltag_fold")

    def _stage_nonempty(self) -> bool:
        if self._stage is None:
            self._stage = self.conn.execute("SELECT 1 FROM photos_fts_stage_v LIMIT 1").fetchone() is not None
            if self._stage and not self.conn.in_transaction:
                self._stage = not self._fold_stage()
        return self._stage

    def _fold_stage(self) -> bool:
        """Move the staged terms into search_vocab if the catalog is free right now (never waits)."""
        c = self.conn
        old = c.execute("PRAGMA busy_timeout").fetchone()[0]
        c.execute("PRAGMA busy_timeout = 0")
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT OR IGNORE INTO search_vocab(term) SELECT term FROM photos_fts_stage_v")
            c.execute("INSERT INTO photos_fts_stage(photos_fts_stage) VALUES ('delete-all')")
            c.execute("COMMIT")
            return True
        except sqlite3.OperationalError:   # busy (a scan is writing) or read-only: read the stage instead
            if c.in_transaction:
                c.rollback()
            return False
        finally:
            c.execute(f"PRAGMA busy_timeout = {int(old)}")

    def expansions(self, prefix: str) -> list[str] | None:
        hi = prefix + "\U0010ffff"
        lim = _MAX_EXPANSIONS + 1
        staged = self._stage_nonempty()     # first: this may fold the stage into search_vocab
        terms = {r[0] for r in self.conn.execute(
            "SELECT term FROM search_vocab WHERE term >= ? AND term < ? LIMIT ?", (prefix, hi, lim))}
        if len(terms) <= _MAX_EXPANSIONS and staged:
            terms |= {r[0] for r in self.conn.execute(
                "SELECT term FROM photos_fts_stage_v WHERE term >= ? AND term < ? LIMIT ?", (prefix, hi, lim))}
        return None if len(terms) > _MAX_EXPANSIONS else sorted(terms)

    def prefix_expr(self, tokens: Sequence[str]) -> str:
        folded = self.fold(" ".join(tokens))
        if not folded:
            return _fts_phrase(tokens, True)
        last = folded[-1]
        if len(last) <= _NATIVE_PREFIX_CHARS:
            return _fts_phrase(folded, True)
        terms = self.expansions(last)
        if terms is None:
            return _fts_phrase(folded, True)
        return " OR ".join(_fts_phrase([*folded[:-1], t], False) for t in (terms or [last]))


_LEX = re.compile(r'\s*(?:(-?)"([^"]*)("?)(\*?)|(\S+))')


def parse_query(text: str) -> ParsedQuery:
    """Parse the query language (see docs/search.md); never raises for odd input except an empty query.

    - words are ANDed; each bare word matches as a prefix (``eiff`` finds Eiffel), case and diacritics ignored;
    - ``"quoted phrase"`` matches those words in that order exactly (add ``*`` after the closing quote
      for a prefix on its last word); an unclosed quote runs to the end;
    - ``OR`` (upper case) between two terms matches either; it binds tighter than AND;
    - ``-word`` or ``-"phrase"`` excludes.
    Punctuation inside a word separates tokens, which must then appear in order (``Saint-Malo``).
    """
    items: list[tuple[str, Any]] = []   # ('term', _Term) | ('or', None)
    pos = 0
    text = unicodedata.normalize("NFC", text or "")
    while pos < len(text):
        m = _LEX.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        if m.group(5) is not None:
            raw = m.group(5)
            if raw == "OR":
                items.append(("or", None))
                continue
            neg = raw.startswith("-") and len(raw) > 1
            word = raw[1:] if neg else raw
            toks = _tokens(word)
            if toks:
                items.append(("term", _Term(toks, prefix=True, negated=neg)))
        else:
            toks = _tokens(m.group(2))
            if toks:
                items.append(("term", _Term(toks, prefix=bool(m.group(4)), negated=bool(m.group(1)))))
    q = ParsedQuery()
    i = 0
    pending_or = False
    while i < len(items):
        kind, term = items[i]
        i += 1
        if kind == "or":
            # OR only joins two positive terms; otherwise it is the word "OR"
            prev_ok = bool(q.clauses) and not pending_or and i - 2 >= 0 and items[i - 2][0] == "term" \
                and not items[i - 2][1].negated
            next_ok = i < len(items) and items[i][0] == "term" and not items[i][1].negated
            if prev_ok and next_ok:
                pending_or = True
            else:
                q.clauses.append([_Term(["OR"], prefix=False)])
            continue
        if term.negated:
            q.excluded.append(term)
        elif pending_or:
            q.clauses[-1].append(term)
        else:
            q.clauses.append([term])
        pending_or = False
    return q


def column_phrase(column: str, values: Sequence[str]) -> str | None:
    """``column : ("a b" OR "c")``: exact (whole-word, in order) match of any of ``values`` in one column."""
    alts = []
    for v in values:
        toks = _tokens(v)
        if not toks:
            raise SearchError(f"--{column.rstrip('s')} {v!r} has no letters or digits to search for.")
        alts.append(_fts_phrase(toks, False))
    if not alts:
        return None
    return f"{column} : ({' OR '.join(alts)})"


# --------------------------------------------------------------------------------------------
# search


@dataclass
class SearchFilters:
    landmark: Sequence[str] = ()
    place: Sequence[str] = ()
    camera: Sequence[str] = ()
    min_confidence: float | None = None
    since: str | None = None
    until: str | None = None
    unknown: bool = False
    unwritten: bool = False
    folder: str | None = None


_RESULT_COLS = ("p.id, p.path, p.group_key, p.landmark, p.confidence, p.country, p.region, p.city, p.keywords, "
                "p.status, p.error, p.taken_at, p.camera, p.lens, p.write_status, p.role, p.ltag_keywords")


def _row_dict(r: tuple) -> dict[str, Any]:
    (pid, path, group, landmark, conf, country, region, city, keywords, status, error, taken_at, camera, lens,
     write_status, role, ltag_keywords) = r
    return {
        "path": path, "group": group, "landmark": landmark, "confidence": conf,
        "places": [p for p in (country, region, city) if p], "keywords": _json_list(ltag_keywords),
        "status": status, "error": error, "date": taken_at, "camera": camera, "lens": lens,
        "write_status": write_status, "role": role, "id": pid, "all_keywords": _json_list(keywords),
    }


def _json_list(text: str | None) -> list[str]:
    try:
        v = json.loads(text) if text else []
    except ValueError:
        return []
    return v if isinstance(v, list) else []


def _build(conn: sqlite3.Connection, query: str | ParsedQuery | None, f: SearchFilters
           ) -> tuple[str, str, list[Any]]:
    """(MATCH expression, extra WHERE sql, params)."""
    parsed = query if isinstance(query, ParsedQuery) else parse_query(query or "")
    if query and isinstance(query, str) and query.strip() and not parsed.clauses and not parsed.excluded:
        raise SearchError(f"The query {query!r} has no letters or digits to search for.")
    parts = []
    user = parsed.fts(expander=_Expander(conn))
    if user:
        parts.append(f"({user})")
    for col, vals in (("landmark", f.landmark), ("places", f.place), ("camera", f.camera)):
        if vals:
            parts.append(f"({column_phrase(col, list(vals))})")
    if f.unknown:
        parts.append("(flags : zzstatusunknown)")
    if f.unwritten:
        parts.append("(flags : (zzwritepending OR zzwritereadonly OR zzwritefailed OR zzwriteundone))")
    if f.min_confidence is not None and f.min_confidence > 0:
        lo_bucket = max(0, min(10, int(float(f.min_confidence) * 10)))
        parts.append("(flags : (" + " OR ".join(f"zzconf{b}" for b in range(lo_bucket, 11)) + "))")
    folder = None
    if f.folder:
        folder = os.path.abspath(os.path.expanduser(f.folder)).rstrip(os.sep) or os.sep
        ftoks = _tokens(folder)
        if ftoks:  # narrow through the index (tokens at the start of the folder column), then check exactly
            parts.append("(folder : ^" + _fts_phrase(ftoks, False) + ")")
    if not parts:
        parts.append("(flags : zzall)")
    match = " AND ".join(parts)
    where = []
    params: list[Any] = []
    lo, hi = date_range_keys(f.since, f.until)
    if f.until:
        where.append("f.rowid >= ?")
        params.append(lo)
    if f.since:
        where.append("f.rowid <= ?")
        params.append(hi)
    if f.min_confidence is not None:
        where.append("p.confidence >= ?")
        params.append(float(f.min_confidence))
    if folder:
        base = folder if folder.endswith(os.sep) else folder + os.sep
        where.append("p.path > ? AND p.path < ?")
        params += [base, base[:-1] + chr(ord(os.sep) + 1)]
    return match, (" AND " + " AND ".join(where)) if where else "", params


def search(catalog: Any, query: str | None = None, *, filters: SearchFilters | None = None, sort: str = "date",
           limit: int | None = 50, offset: int = 0, **filter_kwargs: Any) -> list[dict[str, Any]]:
    """Photos matching ``query`` and the filters, newest first by default.

    Args:
        catalog: a :class:`~landmark_tagger.catalog.Catalog` (or a sqlite3 connection).
        query: the query language of docs/search.md; None or "" matches every photo.
        filters: a :class:`SearchFilters`; or pass its fields as keyword arguments.
        sort: ``date`` (newest first; fastest), ``confidence`` (highest first) or ``path``.
        limit: page size (None: all); offset: rows to skip.

    Returns:
        dicts with path, group, landmark, confidence, places, keywords (ltag's, flat + hierarchical, as in
        ``scan --json``), status, error, date, camera, lens, write_status, role, id, all_keywords (every
        keyword in the file, any tool's).

    Raises:
        SearchError: a bad date or a query without anything to search for.
    """
    f = filters or SearchFilters(**filter_kwargs)
    if sort not in SORTS:
        raise SearchError(f"Unknown sort {sort!r}: use one of {', '.join(SORTS)}.")
    conn = getattr(catalog, "conn", catalog)
    match, where, params = _build(conn, query, f)
    if sort == "confidence" and limit is not None:
        return _by_confidence(conn, query, match, where, params, int(limit), int(offset))
    if sort == "path" and not (query or "").strip() and not (f.landmark or f.place or f.camera or f.since or f.until
                                                             or f.unwritten or f.min_confidence is not None):
        # nothing selective to match: walking the path index finds the page at once (rare filters would
        # make that walk long; they go through the index below)
        return _by_path_without_text(conn, f, limit, offset)
    order = {"date": "f.rowid", "confidence": "p.confidence IS NULL, p.confidence DESC, f.rowid",
             "path": "p.path"}[sort]
    sql = (f"SELECT {_RESULT_COLS} FROM photos_fts f JOIN photos p ON p.id = (f.rowid & {ID_MASK}) "
           f"WHERE photos_fts MATCH ?{where} ORDER BY {order}")
    args: list[Any] = [match, *params]
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args += [int(limit), int(offset)]
    elif offset:
        sql += " LIMIT -1 OFFSET ?"
        args.append(int(offset))
    try:
        return [_row_dict(r) for r in conn.execute(sql, args)]
    except sqlite3.OperationalError as e:  # pragma: no cover - the parser only emits valid syntax
        raise SearchError(f"The query {query!r} could not be run ({e}).") from e


def _by_confidence(conn: sqlite3.Connection, query: Any, match: str, where: str, params: list[Any], limit: int,
                   offset: int) -> list[dict[str, Any]]:
    """Highest confidence first, one percent bucket (an index term ``zzcpNN``) at a time: only the buckets
    that reach the page are read and sorted, not every match."""
    need = offset + limit
    out: list[dict[str, Any]] = []
    buckets = [f"zzcp{b}" for b in range(100, -1, -1)] + ["zzcpnone"]
    sql = (f"SELECT {_RESULT_COLS} FROM photos_fts f JOIN photos p ON p.id = (f.rowid & {ID_MASK}) "
           f"WHERE photos_fts MATCH ?{where} ORDER BY p.confidence DESC, f.rowid LIMIT ?")
    try:
        for b in buckets:
            rows = conn.execute(sql, [f"({match}) AND (flags : {b})", *params, need - len(out)]).fetchall()
            out += [_row_dict(r) for r in rows]
            if len(out) >= need:
                break
    except sqlite3.OperationalError as e:  # pragma: no cover - the parser only emits valid syntax
        raise SearchError(f"The query {query!r} could not be run ({e}).") from e
    return out[offset:need]


def _by_path_without_text(conn: sqlite3.Connection, f: SearchFilters, limit: int | None,
                          offset: int) -> list[dict[str, Any]]:
    """Path order with no text to match: walk the photos' path index (a --folder is an index range)."""
    where = ["1"]
    params: list[Any] = []
    if f.folder:
        folder = os.path.abspath(os.path.expanduser(f.folder)).rstrip(os.sep) or os.sep
        base = folder if folder.endswith(os.sep) else folder + os.sep
        where.append("p.path > ? AND p.path < ?")
        params += [base, base[:-1] + chr(ord(os.sep) + 1)]
    if f.unknown:
        where.append("p.status = 'unknown'")
    if f.unwritten:
        where.append("p.write_status IN ('pending', 'readonly', 'failed', 'undone')")
    if f.min_confidence is not None:
        where.append("p.confidence >= ?")
        params.append(float(f.min_confidence))
    if f.since or f.until:
        lo, hi = date_range_keys(f.since, f.until)   # the same seconds as the index's sort key
        where.append(f"{_key_sql('p')} BETWEEN ? AND ?")
        params += [lo, hi]
    sql = f"SELECT {_RESULT_COLS} FROM photos p WHERE {' AND '.join(where)} ORDER BY p.path LIMIT ? OFFSET ?"
    rows = conn.execute(sql, [*params, -1 if limit is None else int(limit), int(offset)])
    return [_row_dict(r) for r in rows]


def count(catalog: Any, query: str | None = None, *, filters: SearchFilters | None = None,
          **filter_kwargs: Any) -> int:
    """How many photos match (reads every match: slower than a first page for broad queries)."""
    f = filters or SearchFilters(**filter_kwargs)
    conn = getattr(catalog, "conn", catalog)
    match, where, params = _build(conn, query, f)
    join = f" JOIN photos p ON p.id = (f.rowid & {ID_MASK})" if ("p." in where) else ""
    sql = f"SELECT count(*) FROM photos_fts f{join} WHERE photos_fts MATCH ?{where}"
    return int(conn.execute(sql, [match, *params]).fetchone()[0])


# --------------------------------------------------------------------------------------------
# stats


def stats(catalog: Any, *, top_places: int = 20) -> dict[str, Any]:
    """Catalog overview: files and photos, landmarks with counts, unknown share, places, last scan."""
    conn = getattr(catalog, "conn", catalog)
    files, photos = conn.execute("SELECT count(*), count(DISTINCT group_key) FROM photos").fetchone()
    by_status = dict(conn.execute("SELECT status, count(DISTINCT group_key) FROM photos GROUP BY status").fetchall())
    landmarks = [{"landmark": n, "photos": c} for n, c in conn.execute(
        "SELECT landmark, count(DISTINCT group_key) c FROM photos WHERE landmark IS NOT NULL "
        "GROUP BY landmark ORDER BY c DESC, landmark")]
    recognised = sum(by_status.get(k, 0) for k in ("tagged", "unknown"))
    countries = [{"country": n, "photos": c} for n, c in conn.execute(
        "SELECT country, count(DISTINCT group_key) c FROM photos WHERE country IS NOT NULL "
        "GROUP BY country ORDER BY c DESC, country LIMIT ?", (top_places,))]
    cities = [{"city": n, "country": k, "photos": c} for n, k, c in conn.execute(
        "SELECT city, country, count(DISTINCT group_key) c FROM photos WHERE city IS NOT NULL "
        "GROUP BY city, country ORDER BY c DESC, city LIMIT ?", (top_places,))]
    with_gps = conn.execute("SELECT count(DISTINCT group_key) FROM photos WHERE gps_lat IS NOT NULL").fetchone()[0]
    unwritten = conn.execute("SELECT count(*) FROM photos WHERE write_status IN ('pending', 'readonly', 'failed', 'undone')").fetchone()[0]
    last = conn.execute("SELECT id, started_at, finished_at, status, summary FROM runs WHERE kind = 'scan' "
                        "ORDER BY id DESC LIMIT 1").fetchone()
    last_scan = None
    if last:
        try:
            summary = json.loads(last[4]) if last[4] else {}
        except ValueError:
            summary = {}
        last_scan = {"run": last[0], "started_at": last[1], "finished_at": last[2], "status": last[3],
                     "summary": summary}
    return {
        "files": files, "photos": photos, "by_status": by_status, "landmarks": landmarks,
        "landmark_count": len(landmarks), "recognised": recognised,
        "unknown": by_status.get("unknown", 0),
        "unknown_share": (by_status.get("unknown", 0) / recognised) if recognised else None,
        "with_gps": with_gps, "countries": countries, "cities": cities, "unwritten_files": unwritten,
        "last_scan": last_scan,
    }
