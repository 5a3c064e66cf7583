"""``ltag review``: write the self-contained HTML review page (:mod:`landmark_tagger.review`) and open it."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from landmark_tagger.errors import LtagError

log = logging.getLogger(__name__)

DB_HELP = "Catalog file (default: $LTAG_DB, else the user data directory)."


def _bundle_neighbours(model: str | None) -> tuple[Any, float | None, str | None]:
    """(callable emb, generic -> nearest bundle landmarks, threshold, model id); (None, None, None) without a
    loadable bundle (the page then shows no bundle neighbours)."""
    try:
        from landmark_tagger.bundle import load_bundle
        from landmark_tagger.recognizer import Recognizer

        bundle = load_bundle(Path(model) if model else None)
        rec = Recognizer(bundle)
    except (LtagError, ImportError) as e:
        log.info("review without model neighbours: %s", e)
        return None, None, None
    names = [lab.name for lab in bundle.labels]

    def nearest(emb: Any, _generic: Any) -> list[list[tuple[str, float]]]:
        sims, labels = rec.neighbours(emb, k=20)
        out = []
        for s_row, l_row in zip(sims.tolist(), labels.tolist(), strict=True):
            seen: dict[int, float] = {}
            for s, lab in zip(s_row, l_row, strict=True):
                if lab >= 0 and lab not in seen:
                    seen[lab] = s
            out.append([(names[lab], s) for lab, s in list(seen.items())[:3]])
        return out

    return nearest, float(bundle.threshold), bundle.model_id


def register(app: typer.Typer) -> None:
    @app.command("review")
    def review_cmd(
        paths: Annotated[list[str] | None, typer.Argument(help="Only photos under these files/folders.")] = None,
        out_file: str | None = typer.Option(None, "--out", help="Where to write the page (.html)."),
        no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser; print the page's path."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        model: str | None = typer.Option(None, "--model", help="Model bundle folder (default: the shipped one)."),
        threshold: float | None = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                               help="Confidence threshold to judge 'uncertain' by (default: the "
                                                    "model's)."),
    ) -> None:
        """Write an HTML page of scanned photos grouped by landmark, uncertain ones first, and open it.

        The page is one self-contained file (thumbnails embedded); it loads nothing from the network.

        Example:

            ltag review ~/Photos/2024/greenland
            ltag review --out run.html --no-open
        """
        from landmark_tagger import review as R
        from landmark_tagger.catalog import open_catalog
        from landmark_tagger.console import err, out
        from landmark_tagger.fsutil import atomic_write
        from landmark_tagger.paths import default_db_path, user_gallery_path
        from landmark_tagger.user_gallery import UserGallery

        db_path = default_db_path(db)
        neighbours, bundle_threshold, model_id = _bundle_neighbours(model)
        thr = threshold if threshold is not None else (bundle_threshold if bundle_threshold is not None else 0.5)
        with open_catalog(db_path, create=False) as cat:
            items = R.load_items(cat, paths or [])
            gallery = UserGallery.load(user_gallery_path(db_path))
            R.attach_neighbours(items, cat, gallery=gallery if len(gallery) else None, bundle_neighbours=neighbours)
        if not items:
            err.print("No scanned photos match; the page says so.", markup=False, highlight=False)
        page = R.render(items, threshold=thr, model_id=model_id,
                        title="ltag review" + (f": {', '.join(paths)}" if paths else ""))
        if out_file:
            dest = Path(out_file).expanduser()
        else:
            dest = db_path.parent / f"review-{datetime.now():%Y%m%d-%H%M%S}.html"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(dest, page.encode("utf-8"))
        except OSError as e:
            raise LtagError(f"Cannot write {dest}: {e.strerror or e}") from e
        if no_open:
            out.print(str(dest.resolve()), markup=False, highlight=False, soft_wrap=True)
            return
        import webbrowser

        if not webbrowser.open(dest.resolve().as_uri()):
            err.print("No browser could be opened; the page is at:", markup=False, highlight=False)
            out.print(str(dest.resolve()), markup=False, highlight=False, soft_wrap=True)
        else:
            err.print(f"Opened {dest.resolve()}", markup=False, highlight=False)
