"""``ltag rename --by-landmark``: a thin layer over :mod:`landmark_tagger.rename`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from landmark_tagger.errors import RenameError

DB_HELP = "Catalog file (default: $LTAG_DB, else the user data directory)."


def _open(db: str | None, create: bool = False):  # noqa: ANN202
    from landmark_tagger.catalog import open_catalog
    from landmark_tagger.paths import default_db_path

    return open_catalog(default_db_path(db), create=create)


def register(app: typer.Typer) -> None:
    from landmark_tagger.filenames import DEFAULT_TEMPLATE

    @app.command("rename")
    def rename_cmd(
        paths: Annotated[list[str] | None, typer.Argument(help="Archive root(s): nothing ever leaves them.")] = None,
        by_landmark: bool = typer.Option(False, "--by-landmark", help="Rename by catalog landmark (required)."),
        template: str = typer.Option(DEFAULT_TEMPLATE, "--template", "-t",
                                     help="New path under the root, without extension. Fields: landmark, place, "
                                          "city, country, date (strftime), camera, stem, seq, ext."),
        unknown_as: str | None = typer.Option(None, "--unknown-as",
                                              help="Rename photos with no landmark using this text (default: leave)."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only show the plan; change nothing."),
        resume: bool = typer.Option(False, "--resume", help="Complete the last interrupted rename batch."),
        undo: bool = typer.Option(False, "--undo", help="Move the last rename batch back (same as ltag undo --rename)."),
        batch: int | None = typer.Option(None, "--batch", help="With --undo/--resume: this batch id."),
        limit: int = typer.Option(30, "--show", help="Plan rows to show (0 = all)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Rename photo groups (JPEG + RAW + sidecars) by their landmark, safely and undoably.

        Shows the plan first and asks; every move is journaled in the catalog before it happens.

        Example:

            ltag rename --by-landmark ~/Photos --dry-run
            ltag rename --by-landmark ~/Photos -t '{country}/{landmark}/{date:%Y}/{stem}' --yes
            ltag rename --resume
            ltag rename --undo
        """
        from landmark_tagger import rename as R
        from landmark_tagger.console import err, out, warning

        if undo:
            with _open(db) as cat:
                res = R.undo_rename(cat, batch)
            _report_undo(res)
            return
        if resume:
            with _open(db) as cat:
                res = R.resume_rename(cat, batch, progress=_progress())
            err.print(f"[ok]Batch {res.run_id} completed:[/ok] {res.moved} files moved, {len(res.skipped)} skipped.")
            _report_skips(res.skipped)
            return
        if not by_landmark:
            raise RenameError("Say how to rename: --by-landmark (the only mode for now).")
        if not paths:
            raise RenameError("Give the archive root(s) to rename under, e.g. ltag rename --by-landmark ~/Photos.")
        with _open(db) as cat:
            prev = R.unfinished_batch(cat)
            if prev is not None and not dry_run:
                raise RenameError(f"Rename batch {prev} was interrupted. Finish it with `ltag rename --resume` or "
                                  f"revert it with `ltag rename --undo --batch {prev}` first.")
            plan = R.plan_rename(cat, paths, template=template, unknown_as=unknown_as)
            _show_plan(plan, limit)
            if not plan.moving:
                err.print("Nothing to rename.")
                return
            if dry_run:
                err.print("[dim]Dry run: nothing was changed.[/dim]")
                return
            warning(R.LOST_TRACK_WARNING)
            if not yes and not typer.confirm(f"Rename {len(plan.moves())} files?", default=False, err=True):
                raise typer.Abort()
            res = R.execute_rename(cat, plan, progress=_progress())
        out.print(f"[ok]Renamed[/ok] {res.moved} files ({res.groups} photos) in batch {res.run_id}; "
                  f"undo with `ltag undo --rename --batch {res.run_id}`.")
        _report_skips(res.skipped)


def _progress():  # noqa: ANN202
    from landmark_tagger.console import err

    state = {"last": 0.0}

    def cb(done: int, total: int) -> None:
        import time

        if not err.is_terminal:  # a log or a pipe gets the summary only, not a run of "\r" counters
            return
        now = time.monotonic()
        if now - state["last"] > 0.5 or done == total:
            state["last"] = now
            err.print(f"[dim]{done}/{total} files[/dim]", end="\r")

    return cb


def _rel(path: str, roots: list[str]) -> str:
    for r in roots:
        if path.startswith(r + os.sep):
            return path[len(r) + 1:]
    return path


def _show_plan(plan, limit: int) -> None:  # noqa: ANN001
    from rich.table import Table

    from landmark_tagger.console import err, out

    moves = plan.moves()
    if moves:
        t = Table(show_edge=False, header_style="bold")
        for head in ("old", "", "new"):  # fold, never cut: a plan must show every name in full
            t.add_column(head, overflow="fold")
        shown = moves if limit == 0 else moves[:limit]
        for old, new in shown:
            t.add_row(_rel(old, plan.roots), "→", _rel(new, plan.roots))
        out.print(t)
        if len(shown) < len(moves):
            err.print(f"[dim]... and {len(moves) - len(shown)} more (--show 0 shows all)[/dim]")
    c = plan.counts()
    err.print(f"{c['files']} files in {c['groups']} photos to rename; {c['unchanged']} already named; "
              f"{c['skipped']} skipped; {c['unknown_kept']} unknown left in place; "
              f"{c['not_recognised']} not recognised (not scanned yet, or unreadable); {c['new_folders']} new folders; "
              f"{c['seq_bumped']} names bumped to avoid a conflict.")
    for g in plan.skipped:
        err.print(f"[warning]skipped[/warning] {g.members[0].path}: {g.reason}")


def _report_skips(skipped: list[tuple[str, str]]) -> None:
    from landmark_tagger.console import warning

    for path, why in skipped:
        warning(f"{path}: {why} (its photo group stays where it was)")


def _report_undo(res) -> None:  # noqa: ANN001
    from landmark_tagger.console import err, warning

    err.print(f"[ok]Batch {res.run_id} {res.status}:[/ok] {res.restored} files moved back, "
              f"{res.folders_removed} folders removed.")
    for path, why in res.problems:
        warning(f"{path}: {why}")
    if res.problems:
        raise RenameError(f"{len(res.problems)} files could not be moved back; see above.")
