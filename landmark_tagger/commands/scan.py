"""``ltag scan``, ``ltag write`` and ``ltag undo``: thin layers over :mod:`landmark_tagger.scan` and
:mod:`landmark_tagger.undo`. Heavy imports happen inside the commands (a rescan of an unchanged archive
must start fast)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from landmark_tagger._entry import finishing
from landmark_tagger.errors import LtagError

DB_HELP = "Catalog file (default: $LTAG_DB, else the user data directory)."


def _open(db: str | None, *, create: bool = True, dry_run: bool = False) -> Any:
    from landmark_tagger.catalog import open_catalog
    from landmark_tagger.paths import default_db_path

    path = default_db_path(db)
    if dry_run:  # never create, migrate or even open the catalog file for writing
        from landmark_tagger.scan import catalog_snapshot

        return catalog_snapshot(path)
    return open_catalog(path, create=create)


class _Progress:
    """A rich progress bar on stderr (files/s, ETA); nothing when stderr is not a terminal or with --json."""

    def __init__(self, enabled: bool, label: str):
        self.bar = None
        self.task = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from landmark_tagger.console import err

            class _Rate(TextColumn):
                def render(self, task: Any) -> Any:  # noqa: ANN401
                    from rich.text import Text

                    speed = task.finished_speed or task.speed
                    return Text(f"{speed:,.0f} files/s" if speed else "")

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), _Rate(""),
                                TimeRemainingColumn(), console=err, transient=True)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("", total=total)
        self.bar.update(self.task, completed=done, total=total)


def _json_line(res: Any) -> None:
    sys.stdout.write(json.dumps(res.to_json(), ensure_ascii=False) + "\n")


def _summary(report: Any, title: str) -> None:
    from rich.table import Table

    from landmark_tagger.console import err

    c = report.counts
    t = Table(title=title, show_header=False, box=None, pad_edge=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    rows = [("tagged", c["tagged"]), ("unknown", c["unknown"]), ("unchanged", c["unchanged"]),
            ("skipped", c["skipped"]), ("failed", c["failed"]), ("written", c["written"]),
            ("read-only (not written)", c["readonly"])]
    if c.get("moved"):
        rows.append(("moved (decision kept)", c["moved"]))
    if c.get("by_sequence"):
        rows.append(("tagged or untagged by sequence consensus", c["by_sequence"]))
    if c.get("pending"):
        rows.append(("decided, not written (`ltag write`)", c["pending"]))
    if report.dry_run:
        rows.append(("would write (dry run)", c["would_write"]))
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    err.print(t)
    secs = report.elapsed_s
    rate = report.files / secs if secs > 0 else 0.0
    err.print(f"[dim]{report.files:,} files in {secs:.1f} s ({rate:,.0f} files/s)"
              + (f", run {report.run_id}" if report.run_id and not report.dry_run else "") + "[/dim]")
    if c["readonly"] and not report.dry_run:
        err.print("[dim]Read-only files keep their decisions in the catalog: make them writable, then `ltag write` "
                  "adds the keywords.[/dim]")
    for p in report.problems[:50]:
        err.print(f"[warning]{p.status if p.status in ('failed', 'skipped') else p.write_status}[/warning] "
                  f"{p.path}: {p.error}", markup=True, highlight=False)
    if len(report.problems) > 50:
        err.print(f"[dim]… and {len(report.problems) - 50} more (use --json for all)[/dim]")


def _dry_run_listing(report: Any) -> None:
    from landmark_tagger.console import out

    for target, add, remove in report.planned_writes:
        parts = [f"+{k}" for k in add] + [f"-{k}" for k in remove]
        out.print(f"would write {target}: {', '.join(parts) if parts else '(ltag records only)'}",
                  markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("scan")
    def scan_cmd(
        paths: Annotated[list[str], typer.Argument(help="Files and folders to scan (folders recursively).")],
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        model: str | None = typer.Option(None, "--model", help="Model bundle folder (default: the shipped one)."),
        no_write: bool = typer.Option(False, "--no-write", help="Decide and catalog only; `ltag write` later."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Change nothing (files or catalog); show what would be written."),
        as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per file."),
        threshold: float | None = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                               help="Confidence needed to tag (default: the bundle's calibrated one)."),
        sidecar: str = typer.Option("adobe", "--sidecar", help="New sidecar style: adobe (DSC_1.xmp) or darktable (DSC_1.NEF.xmp)."),
        sidecar_only: bool = typer.Option(False, "--sidecar-only", help="Never modify an original; JPEGs get sidecars too."),
        keep_mtime: bool = typer.Option(False, "--keep-mtime", help="Keep the modification time of rewritten JPEGs."),
        iptc_location: bool = typer.Option(False, "--iptc-location", help="Fill empty City/State/Country from GPS."),
        workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
        exclude: Annotated[list[str] | None, typer.Option(
            "--exclude", help="Skip files/folders matching this glob (repeatable).")] = None,
        retag: bool = typer.Option(False, "--retag", help="Re-decide scanned photos from stored embeddings (no decoding)."),
        gpu: bool = typer.Option(False, "--gpu", help="Use the CUDA provider of onnxruntime when available."),
        sequence: bool = typer.Option(True, "--sequence/--no-sequence",
                                      help="Let photos shot minutes apart (and nearby, with GPS) lift or lower each "
                                           "other's confidence."),
    ) -> None:
        """Recognise landmarks in photos, write them as keywords and index them in the catalog.

        Unchanged files are skipped (size + mtime); moved files keep their decisions; RAW files are never
        written (XMP sidecars instead); every change can be reverted with `ltag undo`.

        Example:

            ltag scan ~/Photos
            ltag scan ~/Photos/2024 --no-write --json > decisions.jsonl
            ltag scan card/DCIM --sidecar darktable --exclude '*/rejects/*'
        """
        from landmark_tagger.scan import scan

        if sidecar not in ("adobe", "darktable"):
            raise LtagError(f"--sidecar must be adobe or darktable, not {sidecar!r}.")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else None
        with _open(db, dry_run=dry_run) as cat, _Progress(not as_json, "scanning") as prog:
            report = scan(paths, catalog=cat, model_dir=model, write=not no_write, dry_run=dry_run,
                          threshold=threshold, sidecar_style=sidecar, sidecar_only=sidecar_only,
                          keep_mtime=keep_mtime, iptc_location=iptc_location, workers=workers, exclude=exclude or (),
                          retag=retag, progress=prog, on_result=_json_line if as_json else None,
                          providers=providers, sequence=sequence)
        if dry_run and not as_json:
            _dry_run_listing(report)
        _summary(report, "ltag scan (dry run: nothing changed)" if dry_run else "ltag scan")
        if report.exit_code:
            raise typer.Exit(report.exit_code)

    @app.command("write")
    def write_cmd(
        paths: Annotated[list[str] | None, typer.Argument(
            help="Only photos under these files/folders (default: all).")] = None,
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        dry_run: bool = typer.Option(False, "--dry-run", help="Change nothing; show what would be written."),
        as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per file."),
        sidecar: str = typer.Option("adobe", "--sidecar", help="New sidecar style: adobe or darktable."),
        sidecar_only: bool = typer.Option(False, "--sidecar-only", help="Never modify an original; JPEGs get sidecars too."),
        keep_mtime: bool = typer.Option(False, "--keep-mtime", help="Keep the modification time of rewritten JPEGs."),
        iptc_location: bool = typer.Option(False, "--iptc-location", help="Fill empty City/State/Country from GPS."),
    ) -> None:
        """Write the catalog's decisions that are not in the files yet (after `scan --no-write`, or read-only
        files made writable since).

        Example:

            ltag scan ~/Photos --no-write && ltag review && ltag write
        """
        from landmark_tagger.scan import write_pending

        if sidecar not in ("adobe", "darktable"):
            raise LtagError(f"--sidecar must be adobe or darktable, not {sidecar!r}.")
        with _open(db, create=False, dry_run=dry_run) as cat, _Progress(not as_json, "writing") as prog:
            report = write_pending(cat, paths or (), dry_run=dry_run, sidecar_style=sidecar,
                                   sidecar_only=sidecar_only, keep_mtime=keep_mtime, iptc_location=iptc_location,
                                   progress=prog, on_result=_json_line if as_json else None)
            finishing()  # done and recorded: a Ctrl-C from here on is ignored (ltag's console script only; a scan
            # does this itself once its run is recorded)
        if dry_run and not as_json:
            _dry_run_listing(report)
        _summary(report, "ltag write (dry run: nothing changed)" if dry_run else "ltag write")

    @app.command("undo")
    def undo_cmd(
        run: int | None = typer.Option(None, "--run", help="Undo this run (see --list)."),
        all_runs: bool = typer.Option(False, "--all", help="Undo every run, newest first."),
        force: bool = typer.Option(False, "--force", help="Also restore files changed by another program since."),
        rename: bool = typer.Option(False, "--rename", help="Undo the last rename batch."),
        batch: int | None = typer.Option(None, "--batch", help="Undo this rename batch."),
        list_runs: bool = typer.Option(False, "--list", help="List the runs that can be undone, newest first."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be restored; change nothing."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Revert the most recent run that changed files (a scan, a write or a rename), byte for byte.

        A file changed by another program since ltag wrote it is reported and left alone (--force to
        restore it anyway, when that is possible byte-exact).

        Example:

            ltag undo
            ltag undo --list && ltag undo --run 12
        """
        from landmark_tagger import fsutil
        from landmark_tagger.console import err, out
        from landmark_tagger.undo import history, undo

        with _open(db, create=False, dry_run=dry_run) as cat:
            if list_runs:
                for r in history(cat):
                    out.print(f"{r['id']:>5}  {r['kind']:<7} {r['started_at']}  {r['status']:<11} "
                              f"{r['changes']} file change(s)", markup=False, highlight=False)
                return
            rep = undo(cat, run_id=run, all=all_runs, force=force, rename=rename, batch=batch,
                       fileops=fsutil.NoOpFileOps() if dry_run else None)
        verb = "would restore" if dry_run else "restored"
        err.print(f"Run(s) {', '.join(map(str, rep.runs))}: {verb} {len(rep.restored)} file(s), "
                  f"deleted {len(rep.deleted)} sidecar(s) ltag had created"
                  + (f", moved back {sum(int(getattr(x, 'restored', 0) or 0) for x in rep.renames)} renamed "
                     f"file(s) in {len(rep.renames)} rename batch(es)" if rep.renames else ""))
        for path, why in rep.skipped:
            err.print(f"[warning]skipped[/warning] {path}: {why}")
        for path, why in rep.failed:
            err.print(f"[error]failed[/error] {path}: {why}")
        if rep.exit_code:
            raise typer.Exit(rep.exit_code)
