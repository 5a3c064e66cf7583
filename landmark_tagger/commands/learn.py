"""``ltag learn``, ``ltag forget`` and ``ltag landmarks``: thin layers over :mod:`landmark_tagger.learn` and
:mod:`landmark_tagger.user_gallery`. Heavy imports (numpy, onnxruntime) happen inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from landmark_tagger.errors import LtagError

DB_HELP = "Catalog file (default: $LTAG_DB, else the user data directory). The user gallery lives beside it."
MODEL_HELP = "Model bundle folder (default: the shipped one)."


def _db_path(db: str | None) -> Path:
    from landmark_tagger.paths import default_db_path

    return default_db_path(db)


def _gallery_path(db: str | None) -> Path:
    from landmark_tagger.paths import user_gallery_path

    return user_gallery_path(_db_path(db))


def _open(db: str | None, *, create: bool = True) -> Any:
    from landmark_tagger.catalog import open_catalog

    return open_catalog(_db_path(db), create=create)


def _recognizer(model: str | None, gpu: bool = False) -> Any:
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.recognizer import Recognizer

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else None
    return Recognizer(load_bundle(Path(model) if model else None), providers=providers)


def _print_learn(report: Any, as_json: bool) -> None:
    from landmark_tagger.console import err, out, warning

    if as_json:
        out.print(json.dumps(report.to_json(), ensure_ascii=False), markup=False, highlight=False)
    for p in report.photos:
        if p.status == "failed":
            warning(f"{p.path}: {p.error}")
    for prob in report.problems:
        warning(prob)
    if as_json:
        return
    where = f" at {report.lat:.5f},{report.lon:.5f}" if report.lat is not None and report.lon is not None else ""
    parent = f" (in {report.parent})" if report.parent else ""
    out.print(f"Learned {report.name}{parent}{where}: {report.added} new reference(s), {report.references} in all, "
              f"{report.failed} photo(s) failed.", markup=False, highlight=False)
    err.print("Re-decide already scanned photos with: ltag scan --retag PATH", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("learn")
    def learn_cmd(
        name: str | None = typer.Argument(None, help="The landmark's display name, e.g. \"Ilulissat Icefjord\"."),
        photos: Annotated[list[str] | None, typer.Argument(
            help="Photos of it (JPEG, RAW, RAW+JPEG pairs, folders).")] = None,
        from_folder: Annotated[list[str] | None, typer.Option(
            "--from-folder", help="Every photo in this folder (repeatable).")] = None,
        from_search: str | None = typer.Option(None, "--from-search",
                                               help="Every photo a catalog search finds (see ltag search)."),
        parent: str | None = typer.Option(None, "--parent", help="Hierarchy above it, e.g. \"Greenland\"."),
        gps: str | None = typer.Option(None, "--gps", help="Its position LAT,LON (default: the photos' GPS)."),
        correct_photo: str | None = typer.Option(None, "--correct", metavar="PHOTO",
                                                 help="A wrongly tagged photo: it becomes a reference of NAME and "
                                                      "its wrong landmark keyword is removed (undoable)."),
        no_write: bool = typer.Option(False, "--no-write", help="With --correct: fix the catalog only, not the file."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
        gpu: bool = typer.Option(False, "--gpu", help="Use the CUDA provider of onnxruntime when available."),
    ) -> None:
        """Teach ltag a landmark from a few photos of it (no retraining), or correct a wrong prediction.

        Example:

            ltag learn "Ilulissat Icefjord" DSC_8188.JPG DSC_8190.NEF --parent Greenland
            ltag learn "Our Chapel" --from-folder ~/Photos/2023/chapel --gps 46.0123,7.7456
            ltag learn "Sermermiut" --from-search "ilulissat hike"
            ltag learn --correct DSC_0042.JPG "Iron Pillar"
        """
        from landmark_tagger import learn as L
        from landmark_tagger.console import out

        if not name:
            raise LtagError('Name the landmark: ltag learn "Name" PHOTO... (or ltag learn --correct PHOTO "Name").')
        gallery_path = _gallery_path(db)
        if correct_photo is not None:
            if photos or from_folder or from_search:
                raise LtagError("--correct takes one PHOTO and the right NAME only.")
            rec = _recognizer(model, gpu)
            with _open(db) as cat:
                rep = L.correct(correct_photo, name, recognizer=rec, gallery_path=gallery_path, catalog=cat,
                                write=not no_write)
            if as_json:
                out.print(json.dumps(rep.to_json(), ensure_ascii=False), markup=False, highlight=False)
                return
            was = f" (was {rep.wrong})" if rep.wrong else ""
            out.print(f"{rep.path}: now {rep.right}{was}.", markup=False, highlight=False)
            for w in rep.writes:
                out.print(f"  {w['status']}: {w['target']}" + (f" ({w['error']})" if w.get("error") else ""),
                          markup=False, highlight=False)
            if rep.run_id is not None:
                out.print(f"Undo with: ltag undo --run {rep.run_id}", markup=False, highlight=False)
            return
        if not (photos or from_folder or from_search):
            raise LtagError("Give photos of the landmark: PHOTO..., --from-folder DIR or --from-search QUERY.")
        where = L.parse_gps(gps) if gps else None
        rec = _recognizer(model, gpu)
        with _open(db, create=from_search is None) as cat:
            groups, problems = L.collect(photos or [], from_folder=from_folder or [], from_search=from_search, catalog=cat)
            report = L.learn(name, groups, recognizer=rec, gallery_path=gallery_path, catalog=cat, parent=parent,
                             gps=where, problems=problems)
        _print_learn(report, as_json)

    @app.command("forget")
    def forget_cmd(
        name: str = typer.Argument(..., help="A taught landmark (see ltag landmarks)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Forget a landmark you taught. Photos tagged with it keep their keywords until `ltag scan --retag`.

        Example:

            ltag forget "Our Chapel" && ltag scan --retag ~/Photos
        """
        from landmark_tagger import learn as L
        from landmark_tagger.console import out

        with _open(db) as cat:
            forgotten, n = L.forget(name, gallery_path=_gallery_path(db), catalog=cat)
        out.print(f"Forgot {forgotten} ({n} reference(s)). Re-decide its photos with: ltag scan --retag PATH",
                  markup=False, highlight=False)

    landmarks = typer.Typer(help="List, export and import landmarks (the model's and the ones you taught).",
                            invoke_without_command=True, no_args_is_help=False)

    @landmarks.callback()
    def landmarks_cmd(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="JSON: one object with bundle and user landmarks."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    ) -> None:
        """List the model's landmarks and the ones you taught, with their reference counts.

        Example:

            ltag landmarks
            ltag landmarks --json | jq '.user[].name'
            ltag landmarks export my-landmarks.npz
        """
        ctx.obj = {"db": db}
        if ctx.invoked_subcommand is not None:
            return
        from landmark_tagger.console import out
        from landmark_tagger.learn import list_landmarks

        data = list_landmarks(_gallery_path(db), Path(model) if model else None)
        if as_json:
            out.print(json.dumps(data, ensure_ascii=False), markup=False, highlight=False)
            return
        from rich.table import Table

        t = Table(title=f"Landmarks (model {data['model_id'] or '?'})")
        for col in ("landmark", "source", "references", "parent", "position", "threshold"):
            # a position is never cut ("10.7828,79.13…" at 80 columns); long names fold rather than vanish
            t.add_column(col, no_wrap=col == "position", min_width=18 if col == "position" else None,
                         overflow="fold")
        for lm in data["user"]:
            pos = f"{lm['lat']:.4f},{lm['lon']:.4f}" if lm["lat"] is not None else ""
            t.add_row(lm["name"], "taught", str(lm["references"]), lm["parent"] or "", pos, f"{lm['threshold']:.3f}")
        for lm in data["bundle"]:
            pos = f"{lm['lat']:.4f},{lm['lon']:.4f}" if lm.get("lat") is not None else ""
            t.add_row(lm["name"], "model", "" if lm["references"] is None else str(lm["references"]), "", pos, "")
        out.print(t)
        if data.get("warning"):
            from landmark_tagger.console import warning

            warning(data["warning"])

    @landmarks.command("export")
    def export_cmd(ctx: typer.Context, file: str = typer.Argument(..., help="Where to write (.npz).")) -> None:
        """Export the landmarks you taught to FILE (references' features, names, positions; no photos).

        Example:

            ltag landmarks export ~/my-landmarks.npz
        """
        from landmark_tagger.console import out
        from landmark_tagger.learn import export_gallery

        n = export_gallery(_gallery_path(ctx.obj["db"]), Path(file))
        out.print(f"Exported {n} landmark(s) to {file}.", markup=False, highlight=False)

    @landmarks.command("import")
    def import_cmd(ctx: typer.Context, file: str = typer.Argument(..., help="A file made by ltag landmarks export.")
                   ) -> None:
        """Import taught landmarks from FILE (merged: existing references are kept, none duplicated).

        Example:

            ltag landmarks import ~/my-landmarks.npz && ltag scan --retag ~/Photos
        """
        from landmark_tagger.console import out
        from landmark_tagger.learn import import_gallery

        n_lm, n_ref = import_gallery(_gallery_path(ctx.obj["db"]), Path(file))
        out.print(f"Imported {n_lm} new landmark(s), {n_ref} new reference(s) from {file}.", markup=False,
                  highlight=False)

    app.add_typer(landmarks, name="landmarks")
