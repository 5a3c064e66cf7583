"""``ltag search`` and ``ltag stats``: thin layers over :mod:`landmark_tagger.search`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from landmark_tagger.errors import LtagError

DB_HELP = "Catalog file (default: $LTAG_DB, else the user data directory)."


class NoMatchError(LtagError):
    """Nothing matched a search."""


def _open(db: str | None):  # noqa: ANN202
    from landmark_tagger.catalog import open_catalog
    from landmark_tagger.paths import default_db_path

    return open_catalog(default_db_path(db), create=False)


def _fmt_conf(c: Any) -> str:
    return "" if c is None else f"{c:.2f}"


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search_cmd(
        query: Annotated[list[str] | None, typer.Argument(
            help='Words (AND), "quoted phrases", OR, -exclude. Empty: every photo.')] = None,
        landmark: Annotated[list[str] | None, typer.Option(
            "--landmark", "-l", help="Only this landmark (whole words; repeat = any).")] = None,
        place: Annotated[list[str] | None, typer.Option(
            "--place", "-p", help="Only this country, region or city (repeat = any).")] = None,
        camera: Annotated[list[str] | None, typer.Option(
            "--camera", help="Only this camera, e.g. 'D750' (repeat = any).")] = None,
        min_confidence: float | None = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                                       help="Only decisions at least this confident (0-1)."),
        since: str | None = typer.Option(None, "--since", help="Taken on or after (YYYY, YYYY-MM, YYYY-MM-DD)."),
        until: str | None = typer.Option(None, "--until", help="Taken on or before (whole year/month/day)."),
        unknown: bool = typer.Option(False, "--unknown", help="Only scanned photos with no landmark recognised."),
        unwritten: bool = typer.Option(False, "--unwritten", help="Only decisions not yet written into the file."),
        folder: str | None = typer.Option(None, "--folder", help="Only files under this folder."),
        sort: str = typer.Option("date", "--sort", help="date (newest first), confidence or path."),
        limit: int | None = typer.Option(None, "--limit", "-n", min=0,
                                            help="Rows to show (default 50 for the table, all otherwise; 0 = all)."),
        offset: int = typer.Option(0, "--offset", min=0, help="Skip this many rows (paging)."),
        as_json: bool = typer.Option(False, "--json", help="JSON Lines, one object per file."),
        paths: bool = typer.Option(False, "--paths", help="One path per line."),
        print0: bool = typer.Option(False, "--print0", "-0", help="NUL-separated paths (for xargs -0)."),
        show_count: bool = typer.Option(False, "--count", help="Also count every match (slower for broad queries)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Find photos by landmark, place, keyword, file name, camera or lens.

        Case and diacritics are ignored (Riga finds Rīga); each word matches as a prefix.
        Exit code 1 when nothing matches.

        Example:

            ltag search ilulissat --since 2019 --json
            ltag search '"golden gate" OR "tower bridge"' --paths
            ltag search --unknown --folder ~/Photos/2021 -0 | xargs -0 ls -l
        """
        from landmark_tagger import search as S

        text = " ".join(query or [])
        filters = S.SearchFilters(landmark=landmark or (), place=place or (), camera=camera or (), min_confidence=min_confidence,
                                  since=since, until=until, unknown=unknown, unwritten=unwritten, folder=folder)
        machine = as_json or paths or print0
        page = limit if limit is not None else (None if machine else 50)
        if page == 0:
            page = None
        with _open(db) as cat:
            rows = S.search(cat, text, filters=filters, sort=sort, limit=page, offset=offset)
            total = S.count(cat, text, filters=filters) if show_count else None
            # the hint only where it is true: a filter (--place, --unwritten, ...) that matches nothing in a
            # scanned catalog is not a sign of an empty one
            empty = not rows and cat.conn.execute("SELECT 1 FROM photos LIMIT 1").fetchone() is None
        if not rows:
            raise NoMatchError("No photos match." + (" (Is the catalog scanned?)" if empty else ""))
        out = sys.stdout
        if print0:
            out.write("".join(r["path"] + "\0" for r in rows))
        elif paths:
            out.write("".join(r["path"] + "\n" for r in rows))
        elif as_json:
            keys = ("path", "group", "landmark", "confidence", "places", "keywords", "status", "error", "date",
                    "camera", "lens", "write_status", "all_keywords")
            for r in rows:
                out.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n")
        else:
            _table(rows, total, page, offset)
        out.flush()
        if total is not None and machine:
            from landmark_tagger.console import err

            err.print(f"{total:,} matches")

    @app.command("stats")
    def stats_cmd(
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Catalog overview: photos, landmarks with counts, unknown share, places, last scan.

        Example:

            ltag stats
            ltag stats --json | jq .landmarks
        """
        from landmark_tagger import search as S

        with _open(db) as cat:
            st = S.stats(cat)
        if as_json:
            sys.stdout.write(json.dumps(st, ensure_ascii=False) + "\n")
            return
        _stats_table(st)


def _table(rows: list[dict[str, Any]], total: int | None, page: int | None, offset: int) -> None:
    from rich.table import Table

    from landmark_tagger.console import err, out

    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col in ("path", "landmark", "conf", "date", "places"):
        t.add_column(col, overflow="fold", justify="right" if col == "conf" else "left")
    for r in rows:
        t.add_row(r["path"], r["landmark"] or ("[dim]unknown[/dim]" if r["status"] == "unknown" else ""),
                  _fmt_conf(r["confidence"]), (r["date"] or "").replace("T", " "), ", ".join(dict.fromkeys(reversed(r["places"]))))
    out.print(t)
    shown = f"{offset + 1}-{offset + len(rows)}"
    if total is not None:
        err.print(f"[dim]{shown} of {total:,} matches[/dim]")
    elif page is not None and len(rows) == page:
        err.print(f"[dim]showing {shown}; more with --offset {offset + len(rows)} or --limit 0; --count counts all[/dim]")


def _stats_table(st: dict[str, Any]) -> None:
    from rich.table import Table

    from landmark_tagger.console import out

    share = st["unknown_share"]

    def n(count: int, word: str) -> str:
        return f"{count:,} {word}{'' if count == 1 else 's'}"

    out.print(f"[bold]{st['photos']:,}[/bold] {'photo' if st['photos'] == 1 else 'photos'} "
              f"({n(st['files'], 'file')}), {n(st['landmark_count'], 'landmark')}, unknown "
              f"{'-' if share is None else f'{share:.0%}'} of {st['recognised']:,} recognised, "
              f"{st['with_gps']:,} with GPS, {n(st['unwritten_files'], 'file')} unwritten")
    if st["last_scan"]:
        ls = st["last_scan"]
        out.print(f"last scan: run {ls['run']}, {ls['finished_at'] or ls['started_at']} ({ls['status']})")
    else:
        out.print("last scan: never")
    if st["landmarks"]:
        t = Table("landmark", "photos", show_edge=False, header_style="bold")
        for lm in st["landmarks"]:
            t.add_row(lm["landmark"], f"{lm['photos']:,}")
        out.print(t)
    if st["countries"]:
        t = Table("country", "photos", show_edge=False, header_style="bold")
        for c in st["countries"]:
            t.add_row(c["country"], f"{c['photos']:,}")
        out.print(t)
