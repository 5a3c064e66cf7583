"""Teach ltag a landmark from a few photos (``ltag learn``), correct a wrong prediction, forget one.

Photos are embedded with the current bundle exactly as ``scan`` does (``decode.decode_for_model`` ->
``preprocess.prepare`` -> ``Recognizer.embed``) and their ``generic`` features become the landmark's
references in the user gallery (:mod:`landmark_tagger.user_gallery`). A RAW+JPEG pair is one photo (the
JPEG is used; a lone RAW uses its embedded preview); a photo already scanned with the same model reuses
its stored features without decoding. Bad files are reported one by one and never stop the others.

``correct`` makes a photo a reference of the right landmark, removes it from the references of the wrong
one, and rewrites the photo's ltag keywords through :class:`writer.Writer` (the same merge as ``scan``:
only ltag's own keywords change; the undo record is written first; ``ltag undo`` restores the file).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landmark_tagger import fsutil
from landmark_tagger.catalog import Catalog, now_iso
from landmark_tagger.errors import LtagError
from landmark_tagger.user_gallery import Reference, UserGallery, UserGalleryError, clean_name, label_for
from landmark_tagger.walk import PhotoGroup, walk

log = logging.getLogger(__name__)

#: Photos taught together must lie within this distance of their median GPS to give the landmark coordinates.
GPS_AGREE_KM = 5.0


class LearnError(LtagError):
    """A landmark cannot be taught, corrected or forgotten as asked."""


@dataclass
class PhotoOutcome:
    """One photo given to ``learn`` / ``correct``."""

    path: str
    status: str  # added | already | failed
    error: str | None = None
    reused: bool = False  # features came from the catalog (no decode)
    companions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "error": self.error, "reused": self.reused,
                "companions": self.companions}


@dataclass
class LearnReport:
    name: str
    photos: list[PhotoOutcome]
    added: int
    references: int  # references of the landmark after learning
    threshold: float | None
    lat: float | None
    lon: float | None
    parent: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for p in self.photos if p.status == "failed")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "added": self.added, "references": self.references, "threshold": self.threshold,
                "lat": self.lat, "lon": self.lon, "parent": self.parent, "failed": self.failed,
                "photos": [p.to_json() for p in self.photos], "problems": self.problems}


@dataclass
class Embedded:
    """A photo group with its features (or the reason it has none)."""

    group: PhotoGroup
    content_hash: str | None = None
    generic: np.ndarray | None = None
    emb: np.ndarray | None = None
    decoded_from: str | None = None
    error: str | None = None
    reused: bool = False
    gps: tuple[float, float] | None = None


# ---------------------------------------------------------------------------------------------- collecting
def collect(photos: Sequence[str | os.PathLike[str]] = (), *, from_folder: Sequence[str | os.PathLike[str]] = (),
            from_search: str | None = None, catalog: Catalog | None = None) -> tuple[list[PhotoGroup], list[str]]:
    """Photo groups (RAW+JPEG pairs as one) from files, folders and a catalog search; plus problems."""
    paths: list[str] = [os.fspath(p) for p in photos] + [os.fspath(p) for p in from_folder]
    problems: list[str] = []
    if from_search is not None:
        if catalog is None:
            raise LearnError("--from-search needs a catalog: run `ltag scan PATH` first.")
        from landmark_tagger import search

        hits = search.search(catalog, from_search, limit=None)
        found = [h["path"] for h in hits if h.get("role", "primary") == "primary"]
        if not found:
            problems.append(f"the search {from_search!r} found no photos")
        paths += found
    if not paths:
        return [], problems
    res = walk(paths)
    problems += [f"{p.path}: {p.error}" for p in res.problems]
    return res.groups, problems


# ---------------------------------------------------------------------------------------------- embedding
def _rekey_legacy(gallery: UserGallery, items: list[Embedded]) -> None:
    """References taught before the user gallery's format 3 are identified by SHA-256: re-identify the ones these
    photos are by their content hash, so that teaching one again is not a duplicate and ``--correct`` finds it."""
    if not gallery.has_legacy_refs():
        return
    for it in items:
        if it.content_hash is None:
            continue
        try:
            gallery.rekey(fsutil.sha256_file(it.group.primary.path), it.content_hash)
        except OSError:
            continue


def _stored_features(catalog: Catalog | None, path: str, sha: str | None, model_id: str
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    if catalog is None or sha is None:
        return None
    row = catalog.conn.execute(
        "SELECT e.embedding, e.generic FROM photos p JOIN embeddings e ON e.photo_id = p.id "
        "WHERE p.path = ? AND p.content_hash = ? AND e.model_id = ?", (path, sha, model_id)).fetchone()
    if row is None or row[1] is None:
        return None
    return np.frombuffer(row[0], np.float32).copy(), np.frombuffer(row[1], np.float32).copy()


def _gps_of(path: str) -> tuple[float, float] | None:
    from landmark_tagger import exif

    try:
        f = exif.read_facts(path)
    except Exception as e:  # noqa: BLE001 - GPS is optional; a broken EXIF block must not fail the photo
        log.debug("no EXIF facts for %s: %s", path, e)
        return None
    if f.gps_lat is None or f.gps_lon is None or (f.gps_lat == 0 and f.gps_lon == 0):
        return None
    return float(f.gps_lat), float(f.gps_lon)


def embed_groups(groups: Sequence[PhotoGroup], recognizer: Any, *, catalog: Catalog | None = None,
                 batch: int = 16, progress: Callable[[int, int], None] | None = None) -> list[Embedded]:
    """Features of each group's photo: stored ones when the catalog has them for the same content and model,
    else decoded (the primary file, then its companions: a NEF's preview when its JPEG is broken)."""
    from landmark_tagger import decode, preprocess
    from landmark_tagger.errors import UnsupportedImageError

    bundle = recognizer.bundle
    spec = bundle.preprocess
    min_side = preprocess.min_decode_side(spec)
    out: list[Embedded] = []
    pending: list[tuple[Embedded, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        embs, gens = recognizer.embed([a for _, a in pending])
        for (item, _), e, g in zip(pending, embs, gens, strict=True):
            item.emb, item.generic = np.asarray(e, np.float32), np.asarray(g, np.float32)
        pending.clear()

    for n, g in enumerate(groups):
        item = Embedded(g)
        out.append(item)
        prim = g.primary.path
        try:
            item.content_hash = fsutil.content_hash_file(prim)
        except OSError as e:
            item.error = f"cannot read: {e.strerror or e}"
            continue
        for f in g.files:
            item.gps = item.gps or _gps_of(f.path)
        stored = _stored_features(catalog, prim, item.content_hash, bundle.model_id)
        if stored is not None:
            item.emb, item.generic = stored
            item.reused = True
            item.decoded_from = prim
        else:
            errors = []
            for f in g.files:
                try:
                    img = decode.decode_for_model(f.path, min_side)
                    arr = preprocess.prepare(img, spec)
                except UnsupportedImageError as e:
                    errors.append(str(e))
                    continue
                except Exception as e:  # noqa: BLE001 - one broken photo never stops the others
                    errors.append(f"cannot decode {os.path.basename(f.path)}: {type(e).__name__}: {e}")
                    continue
                item.decoded_from = f.path
                pending.append((item, arr))
                break
            else:
                item.error = errors[0] if errors else "cannot decode"
            if len(pending) >= batch:
                flush()
        if progress is not None:
            progress(n + 1, len(groups))
    flush()
    return out


def median_gps(points: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    """The median position of the photos' GPS when they agree (all within :data:`GPS_AGREE_KM`), else None."""
    from landmark_tagger.sequence import _haversine_km

    pts = np.array(list(points), dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return None
    lat, lon = float(np.median(pts[:, 0])), float(np.median(pts[:, 1]))
    d = _haversine_km(lat, lon, pts[:, 0], pts[:, 1])
    if float(d.max()) > GPS_AGREE_KM:
        return None
    return round(lat, 6), round(lon, 6)


def parse_gps(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` in decimal degrees -> (lat, lon); raises LearnError for anything else."""
    try:
        a, b = (float(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise LearnError(f"--gps wants LAT,LON in decimal degrees, e.g. 69.1300,-49.9300; got {text!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and -90 <= a <= 90 and -180 <= b <= 180):
        raise LearnError(f"--gps {text!r} is not a position on Earth (latitude -90..90, longitude -180..180).")
    return a, b


# ---------------------------------------------------------------------------------------------- impostors
#: Most distractor photos taken from the catalog.
MAX_CATALOG_DISTRACTORS = 3000
#: A catalog photo counts as a distractor when the bundle tagged it this far above its threshold.
DISTRACTOR_MARGIN = 0.1


def distractors_for(bundle: Any, catalog: Catalog | None = None) -> np.ndarray | None:
    """Generic features of photos known to show the bundle's landmarks (impostors for taught landmarks).

    Sources, in order: the bundle's gallery (optional ``generic`` array in ``gallery.npz``: generic features of
    its reference photos), else the catalog's photos that the bundle tagged with confidence at least
    :data:`DISTRACTOR_MARGIN` above its threshold (up to :data:`MAX_CATALOG_DISTRACTORS`, spread evenly), else None.
    """
    bg = background_for(bundle, catalog)
    return None if bg is None else bg[0]


def background_for(bundle: Any, catalog: Catalog | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """:func:`distractors_for` with each photo's landmark (bundle label index or catalog label id; None when
    unknown): the user gallery learns its whitening from them."""
    getter = getattr(bundle, "gallery_generic", None)  # a loaded Bundle: validated by load_bundle, cached
    if callable(getter):
        g = getter()
        if g is not None and len(g):
            labels = bundle.gallery()[1] if callable(getattr(bundle, "gallery", None)) else None
            return g, (np.asarray(labels) if labels is not None and len(labels) == len(g) else None)
    gal = Path(bundle.path) / "gallery.npz"
    try:
        with np.load(gal, allow_pickle=False) as z:
            if "generic" in z.files:
                g = np.asarray(z["generic"], np.float32)
                if g.ndim == 2 and g.shape[1] == bundle.generic_dim and len(g):
                    labels = np.asarray(z["labels"]) if "labels" in z.files else None
                    return g, (labels if labels is not None and len(labels) == len(g) else None)
    except (OSError, ValueError) as e:
        log.debug("no generic features in %s: %s", gal, e)
    if catalog is None:
        return None
    rows = catalog.conn.execute(
        "SELECT e.generic, p.label FROM photos p JOIN embeddings e ON e.photo_id = p.id WHERE e.model_id = ? AND "
        "p.role = 'primary' AND p.label IS NOT NULL AND p.label NOT LIKE 'user:%' AND p.confidence >= ? AND "
        "e.generic IS NOT NULL ORDER BY p.id", (bundle.model_id, float(bundle.threshold) + DISTRACTOR_MARGIN)
    ).fetchall()
    if not rows:
        return None
    step = max(1, len(rows) // MAX_CATALOG_DISTRACTORS)
    picked = rows[::step][:MAX_CATALOG_DISTRACTORS]
    blobs = [r[0] for r in picked]
    if any(len(b) != bundle.generic_dim * 4 for b in blobs):
        return None
    return (np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), bundle.generic_dim),
            np.array([str(r[1]) for r in picked]))


# ---------------------------------------------------------------------------------------------- learning
def learn(name: str, groups: Sequence[PhotoGroup], *, recognizer: Any, gallery_path: Path,
          catalog: Catalog | None = None, parent: str | None = None, gps: tuple[float, float] | None = None,
          problems: Sequence[str] = (), progress: Callable[[int, int], None] | None = None) -> LearnReport:
    """Add the photos of ``groups`` as references of landmark ``name`` and save the gallery.

    Raises:
        LearnError: no photo could be used (nothing is saved then).
        UserGalleryError: the gallery cannot be read or written, or was taught with another model.
    """
    name = clean_name(name)
    gallery = UserGallery.load(gallery_path)
    gallery.bundle_threshold = float(recognizer.bundle.threshold)
    items = embed_groups(groups, recognizer, catalog=catalog, progress=progress)
    _refresh_background(gallery, recognizer.bundle, catalog)
    outcomes = []
    ok = [it for it in items if it.generic is not None and it.content_hash is not None]
    _rekey_legacy(gallery, ok)
    for it in items:
        outcomes.append(PhotoOutcome(it.group.primary.path, "failed" if it.generic is None else "added", it.error,
                                     it.reused, [c.path for c in it.group.companions]))
    if not ok:
        why = ("; ".join(problems) or "no photos given") if not items else "none of the photos could be read"
        raise LearnError(f"Nothing learned for {name!r}: {why}.")
    if gps is None:
        gps = median_gps(it.gps for it in ok if it.gps is not None)
    refs = [Reference(it.content_hash or "", it.group.primary.path, now_iso()) for it in ok]
    vecs = np.stack([it.generic for it in ok])
    lm, added = gallery.add(name, refs, vecs, model_id=recognizer.bundle.model_id, parent=parent,
                            lat=gps[0] if gps else None, lon=gps[1] if gps else None)
    new_shas = {r.content_hash for r in lm.refs[len(lm.refs) - added:]} if added else set()
    for o, it in zip(outcomes, items, strict=True):
        if o.status == "added" and it.content_hash not in new_shas:
            o.status = "already"
    gallery.save(gallery_path)
    if catalog is not None:
        _record_run(catalog, "learn", {"name": name, "photos": [o.path for o in outcomes]},
                    {"added": added, "references": len(lm.refs)})
    notes = list(problems)
    shipped = _bundle_landmark_named(recognizer.bundle, lm.name)
    if shipped is not None:
        notes.append(f"{lm.name!r} is also one of the model's own landmarks ({shipped}): your photos are kept as a "
                     "taught landmark of the same name, which wins ties; both write the same keyword. "
                     f"`ltag forget {lm.name!r}` removes only the taught one.")
    return LearnReport(lm.name, outcomes, added, len(lm.refs), lm.threshold, lm.lat, lm.lon, lm.parent, notes)


def _bundle_landmark_named(bundle: Any, name: str) -> str | None:
    """The label id of the bundle's landmark whose display name (or id) is ``name`` (case-insensitive), if any."""
    key = name.casefold()
    for lab in getattr(bundle, "labels", None) or []:
        lid = lab.get("id") if isinstance(lab, dict) else getattr(lab, "id", None)
        disp = lab.get("name") if isinstance(lab, dict) else getattr(lab, "name", None)
        if key in {str(lid or "").casefold(), str(disp or "").casefold()}:
            return str(lid)
    return None


def forget(name: str, *, gallery_path: Path, catalog: Catalog | None = None) -> tuple[str, int]:
    """Forget a taught landmark; returns its name and how many references it had. Photos already tagged with it keep their
    keywords until ``ltag scan --retag`` re-decides them.

    Raises:
        LearnError: no taught landmark has that name.
    """
    gallery = UserGallery.load(gallery_path)
    lm = gallery.remove(name)
    if lm is None:
        known = ", ".join(sorted(gallery.names())) or "none"
        raise LearnError(f"No taught landmark is called {name!r} (taught: {known}). Bundle landmarks cannot be "
                         "forgotten; use --threshold or another model.")
    gallery.save(gallery_path)
    if catalog is not None:
        _record_run(catalog, "learn", {"forget": lm.name}, {"references": len(lm.refs)})
    return lm.name, len(lm.refs)


def _refresh_background(gallery: UserGallery, bundle: Any, catalog: Catalog | None) -> None:
    """Give the gallery the freshest background (bundle-shipped or catalog photos); keep the old one if none."""
    if len(gallery) and gallery.model_id and gallery.model_id != bundle.model_id:
        return  # add() reports the model mismatch
    bg = background_for(bundle, catalog)
    if bg is not None and len(bg[0]):
        gallery.set_distractors(bg[0], bg[1])


def _record_run(catalog: Catalog, kind: str, args: dict[str, Any], summary: dict[str, Any]) -> int:
    rid = catalog.start_run(kind, args)
    catalog.finish_run(rid, summary)
    return rid


# ---------------------------------------------------------------------------------------------- correcting
@dataclass
class CorrectReport:
    path: str
    right: str
    wrong: str | None
    removed_from: list[str]  # taught landmarks the photo stopped being a reference of
    writes: list[dict[str, Any]]  # per file: path, target, status, error
    run_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "right": self.right, "wrong": self.wrong, "removed_from": self.removed_from,
                "writes": self.writes, "run_id": self.run_id}


def correct(photo: str | os.PathLike[str], right_name: str, *, recognizer: Any, gallery_path: Path,
            catalog: Catalog, write: bool = True, sidecar_style: str = "adobe") -> CorrectReport:
    """``ltag learn --correct PHOTO "Right Name"``.

    The photo (and its RAW/JPEG companions) becomes a reference of ``right_name`` (created as a taught
    landmark if new) and stops being a reference of any other taught landmark; its catalog rows get the
    right landmark (``decided_by = 'correction'``, confidence 1); and its ltag keywords are rewritten through
    the scan writer (the wrong landmark keyword removed, the right one added; other keywords untouched),
    recorded as a run (kind ``write``, args ``correct``) that ``ltag undo`` reverts.

    Raises:
        LearnError: the photo cannot be read or embedded.
    """
    from landmark_tagger.writer import Writer, desired_keywords, split_ltag_keywords

    right_name = clean_name(right_name)
    groups, problems = collect([photo])
    if not groups:
        raise LearnError(f"Cannot use {os.fspath(photo)}: {'; '.join(problems) or 'not a photo'}.")
    group = groups[0]
    items = embed_groups([group], recognizer, catalog=catalog)
    it = items[0]
    if it.generic is None or it.content_hash is None:
        raise LearnError(f"Cannot learn from {group.primary.path}: {it.error}.")
    gallery = UserGallery.load(gallery_path)
    gallery.bundle_threshold = float(recognizer.bundle.threshold)
    _refresh_background(gallery, recognizer.bundle, catalog)
    _rekey_legacy(gallery, [it])
    removed = [n for n in gallery.remove_reference(it.content_hash) if n.casefold() != right_name.casefold()]
    gallery.add(right_name, [Reference(it.content_hash, group.primary.path, now_iso())], it.generic[None],
                model_id=recognizer.bundle.model_id)
    gallery.save(gallery_path)

    rows = [catalog.photo_by_path(f.path) for f in group.files]
    prim_row = rows[0]
    wrong = prim_row.get("landmark") if prim_row else None
    # A file-changing run: kind 'write' so that `ltag undo` (which walks scan/write/rename runs) reverts it.
    run_id = catalog.start_run("write", {"correct": group.primary.path, "right": right_name, "wrong": wrong})
    writer = Writer(catalog, run_id, sidecar_style=sidecar_style)
    writes: list[dict[str, Any]] = []
    now = now_iso()
    label = label_for(right_name)
    for f, row in zip(group.files, rows, strict=True):
        old = json.loads(row["ltag_keywords"]) if row else []
        old_flat, old_hier = split_ltag_keywords(old)
        # keep the place keywords ltag wanted; swap the landmark
        wrong_flat, wrong_hier = desired_keywords(wrong, [], []) if wrong else ([], [])
        place_flat = [k for k in old_flat if k not in wrong_flat]
        place_hier = [k for k in old_hier if k not in wrong_hier]
        flat, hier = desired_keywords(right_name, place_flat, place_hier)
        owned = json.loads(row["owned_keywords"]) if row else []
        suppressed = [k for k in (json.loads(row["suppressed_keywords"]) if row else []) if k not in (*flat, *hier)]
        update: dict[str, Any] = {"landmark": right_name, "label": label, "confidence": 1.0, "own_confidence": 1.0,
                                  "decided_by": "correction", "status": "tagged",
                                  "ltag_keywords": json.dumps([*flat, *hier])}
        if write:
            out = writer.write(f.path, f.kind, flat, hier, owned_before=owned, suppressed_before=suppressed,
                               props={"Landmark": right_name, "Label": label, "Confidence": "1.0000",
                                      "ModelId": recognizer.bundle.model_id})
            writes.append({"path": f.path, "target": out.target, "status": out.status, "error": out.error})
            update.update(write_status=out.write_status, write_target=out.target, owned_keywords=json.dumps(out.owned),
                          suppressed_keywords=json.dumps(out.suppressed), keywords=json.dumps(out.flat),
                          hier_keywords=json.dumps(out.hier))
            if out.status == "written":
                update["written_at"] = now
                update.update(out.photo_file_columns(f.path))
        else:
            update["write_status"] = "pending"
        if row is not None:
            sets = ", ".join(f"{k} = ?" for k in update)
            catalog.conn.execute(f"UPDATE photos SET {sets} WHERE path = ?", [*update.values(), f.path])
    catalog.finish_run(run_id, {"right": right_name, "wrong": wrong, "writes": writes})
    return CorrectReport(group.primary.path, right_name, wrong, removed, writes, run_id)


def ensure_gallery_model(gallery_path: Path, model_id: str) -> None:
    """Raise a clear error when the taught landmarks were learned with another model."""
    g = UserGallery.load(gallery_path)
    if len(g) and g.model_id and g.model_id != model_id:
        raise UserGalleryError(
            f"The taught landmarks were learned with model {g.model_id}, but the current model is {model_id}. "
            "Re-teach them with this model or pass --model for the old one.")


# ---------------------------------------------------------------------------------------------- listing, moving
def list_landmarks(gallery_path: Path, model: Path | None = None) -> dict[str, Any]:
    """Bundle landmarks (with their gallery reference counts when the bundle says) and taught ones."""
    gallery = UserGallery.load(gallery_path)
    data: dict[str, Any] = {"model_id": None, "bundle": [], "user": [], "warning": None}
    try:
        from landmark_tagger.bundle import load_bundle

        bundle = load_bundle(model)
    except (LtagError, ImportError) as e:
        data["warning"] = f"the model's landmarks are not listed: {e}"
        bundle = None
    if bundle is not None:
        data["model_id"] = bundle.model_id
        counts = _bundle_reference_counts(bundle)
        for lab in bundle.labels:
            data["bundle"].append({"label": lab.id, "name": lab.name, "lat": getattr(lab, "lat", None),
                                   "lon": getattr(lab, "lon", None), "references": counts.get(lab.id)})
        if len(gallery) and gallery.model_id and gallery.model_id != bundle.model_id:
            data["warning"] = (f"the taught landmarks were learned with model {gallery.model_id}, not "
                               f"{bundle.model_id}: re-teach them to use them with this model")
    for lm in gallery.landmarks.values():
        data["user"].append({"label": lm.label, "name": lm.name, "parent": lm.parent, "lat": lm.lat, "lon": lm.lon,
                             "references": len(lm.refs), "threshold": round(float(lm.threshold), 4),
                             "stats": lm.stats, "model_id": gallery.model_id})
    return data


def _bundle_reference_counts(bundle: Any) -> dict[str, int]:
    """Gallery images per bundle label."""
    try:
        _, idx = bundle.gallery()
    except Exception as e:  # noqa: BLE001 - listing must work even with a damaged gallery file
        log.debug("no bundle gallery counts: %s", e)
        return {}
    labels = bundle.label_ids
    out: dict[str, int] = {}
    for k, n in zip(*np.unique(np.asarray(idx), return_counts=True), strict=True):
        if 0 <= int(k) < len(labels):
            out[labels[int(k)]] = int(n)
    return out


def export_gallery(gallery_path: Path, dest: Path) -> int:
    """Write the taught landmarks to ``dest`` (atomically); returns how many.

    Raises:
        LearnError: nothing has been taught.
    """
    gallery = UserGallery.load(gallery_path)
    if not len(gallery):
        raise LearnError("No taught landmarks to export (ltag learn NAME PHOTO... teaches one).")
    gallery.save(dest)
    return len(gallery)


def import_gallery(gallery_path: Path, source: Path) -> tuple[int, int]:
    """Merge the landmarks of an exported gallery into this one; returns (new landmarks, new references).

    Raises:
        UserGalleryError: ``source`` is not a gallery, or was taught with another model than this gallery.
    """
    if not source.is_file():
        raise LearnError(f"No such file: {source}")
    incoming = UserGallery.load(source)
    gallery = UserGallery.load(gallery_path)
    n = gallery.merge(incoming)
    gallery.save(gallery_path)
    return n
