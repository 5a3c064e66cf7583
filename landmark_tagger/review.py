"""The review page: one self-contained HTML file of scanned photos grouped by landmark, uncertain ones first.

A person checks a run at a glance: each photo shows as a thumbnail with its landmark, confidence (its own and,
when sequence consensus changed it, the adjusted one), what decided it, its keywords, and its nearest
references (thumbnails of the user's own reference photos for taught landmarks; for bundle landmarks, which
ship no images, the nearest landmarks and their similarity).

Safety: file names, keywords and captions are untrusted text. Every piece of text and every attribute is
escaped with :func:`html.escape`; images are embedded as ``data:`` URIs (JPEG re-encoded by Pillow, so no
file bytes reach the page); a strict Content-Security-Policy (``default-src 'none'; img-src data:;
style-src 'unsafe-inline'``) forbids scripts and every network load; the page contains no script at all.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
THUMB_SIDE = 256
REF_THUMB_SIDE = 96
JPEG_QUALITY = 80
#: A photo whose confidence is this close to the threshold (either side) is marked uncertain.
UNCERTAIN_BAND = 0.1

UNKNOWN_GROUP = "Not recognised"
FAILED_GROUP = "Could not be read"


@dataclass
class Neighbour:
    """A nearest reference of a photo: a taught landmark's reference photo (with ``path``) or a bundle landmark."""

    name: str
    similarity: float
    path: str | None = None  # a reference photo to show as a thumbnail (taught landmarks)


@dataclass
class ReviewItem:
    path: str
    name: str
    landmark: str | None
    confidence: float | None
    own_confidence: float | None
    decided_by: str | None
    status: str
    error: str | None
    keywords: list[str]
    taken_at: str | None
    companions: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)

    def uncertain(self, threshold: float) -> bool:
        return self.confidence is not None and abs(self.confidence - threshold) < UNCERTAIN_BAND


def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _json_list(value: str | None) -> list[str]:
    try:
        v = json.loads(value or "[]")
    except ValueError:
        return []
    return [str(x) for x in v] if isinstance(v, list) else []


def load_items(catalog: Any, paths: Sequence[str] = ()) -> list[ReviewItem]:
    """Primary photos of the catalog (under ``paths`` when given) as review items; RAW companions listed."""
    where, params = "", []
    if paths:
        clauses = []
        for p in paths:
            ap = os.path.abspath(os.fsdecode(p))
            clauses.append("(path = ? OR substr(path, 1, ?) = ?)")
            prefix = ap.rstrip(os.sep) + os.sep
            params += [ap, len(prefix), prefix]
        where = " AND (" + " OR ".join(clauses) + ")"
    rows = catalog.rows(
        "SELECT id, path, name, group_key, role, landmark, confidence, own_confidence, decided_by, status, error, "
        f"keywords, taken_at FROM photos WHERE 1 = 1{where} ORDER BY path", params)
    companions: dict[str, list[str]] = {}
    items = []
    for r in rows:
        if r["role"] == "companion":
            companions.setdefault(r["group_key"], []).append(r["name"])
    for r in rows:
        if r["role"] == "companion":
            continue
        items.append(ReviewItem(
            path=r["path"], name=r["name"], landmark=r["landmark"], confidence=r["confidence"],
            own_confidence=r["own_confidence"], decided_by=r["decided_by"], status=r["status"], error=r["error"],
            keywords=_json_list(r["keywords"]), taken_at=r["taken_at"],
            companions=companions.get(r["group_key"], [])))
    return items


def order_groups(items: Iterable[ReviewItem], threshold: float) -> list[tuple[str, list[ReviewItem]]]:
    """Group by landmark. Within a group, photos closest to the threshold come first; groups whose most
    uncertain photo is closest to the threshold come first; unrecognised and unreadable photos last."""
    groups: dict[str, list[ReviewItem]] = {}
    for it in items:
        if it.status == "failed":
            key = FAILED_GROUP
        elif it.landmark:
            key = it.landmark
        else:
            key = UNKNOWN_GROUP
        groups.setdefault(key, []).append(it)

    def doubt(it: ReviewItem) -> float:
        return abs(it.confidence - threshold) if it.confidence is not None else 9.0

    for g in groups.values():
        g.sort(key=lambda it: (doubt(it), it.path))
    special = {UNKNOWN_GROUP: 1, FAILED_GROUP: 2}
    return sorted(groups.items(), key=lambda kv: (special.get(kv[0], 0), doubt(kv[1][0]), kv[0].casefold()))


def thumbnail_uri(path: str, side: int = THUMB_SIDE) -> str | None:
    """A ``data:image/jpeg`` URI of the photo's thumbnail, or None when it cannot be read."""
    from PIL import Image

    from landmark_tagger.decode import decode_thumbnail

    try:
        img = decode_thumbnail(path, side)
    except Exception as e:  # any unreadable photo: the page shows a placeholder, never fails
        log.debug("no thumbnail for %s: %s", path, e)
        return None
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f2;color:#222}
header{padding:12px 20px;background:#233;color:#eee}header h1{margin:0 0 4px;font-size:20px}
section{padding:8px 20px}h2{font-size:17px;margin:16px 0 8px}h2 small{color:#666;font-weight:normal}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ccc;border-radius:6px;width:272px;padding:8px;box-sizing:border-box}
.card.uncertain{border:2px solid #d80}.card.failed{border:2px solid #b22}
.thumb{width:256px;height:256px;object-fit:contain;background:#ddd;display:block}
.noimg{width:256px;height:256px;background:#ddd;display:flex;align-items:center;justify-content:center;color:#777}
.name{font-weight:600;word-break:break-all}.meta{color:#555;font-size:12px;word-break:break-word}
.badge{display:inline-block;padding:0 5px;border-radius:3px;background:#d80;color:#fff;font-size:11px}
.refs{display:flex;gap:4px;flex-wrap:wrap;margin-top:4px}.refs figure{margin:0;width:80px;font-size:11px}
.refs img{width:80px;height:80px;object-fit:cover;display:block}.kw{font-size:12px;color:#333}
"""


def _fmt_conf(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def render(items: Sequence[ReviewItem], *, threshold: float, title: str = "ltag review", model_id: str | None = None,
           thumb: Callable[[str, int], str | None] = thumbnail_uri) -> str:
    """The whole page as a string (UTF-8 HTML, no external resources, no scripts)."""
    groups = order_groups(items, threshold)
    ref_cache: dict[str, str | None] = {}

    def ref_thumb(path: str) -> str | None:
        if path not in ref_cache:
            ref_cache[path] = thumb(path, REF_THUMB_SIDE) if os.path.isfile(path) else None
        return ref_cache[path]

    n = len(items)
    n_tagged = sum(1 for it in items if it.landmark)
    n_unc = sum(1 for it in items if it.uncertain(threshold))
    n_failed = sum(1 for it in items if it.status == "failed")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
           '<meta name="referrer" content="no-referrer">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
           f"<header><h1>{_e(title)}</h1><div>{n} photos · {n_tagged} tagged · {n_unc} uncertain · "
           f"{n_failed} unreadable · threshold {threshold:.2f}"
           + (f" · model {_e(model_id)}" if model_id else "") + "</div></header>"]
    for gi, (gname, members) in enumerate(groups):
        out.append(f'<section id="g{gi}"><h2>{_e(gname)} <small>({len(members)})</small></h2><div class="grid">')
        for it in members:
            cls = "card" + (" uncertain" if it.uncertain(threshold) else "") + (" failed" if it.status == "failed"
                                                                                   else "")
            uri = thumb(it.path, THUMB_SIDE) if it.status != "failed" else None
            img = (f'<img class="thumb" src="{_e(uri)}" alt="{_e(it.name)}" title="{_e(it.path)}">' if uri
                   else f'<div class="noimg" title="{_e(it.path)}">no preview</div>')
            conf = _fmt_conf(it.confidence)
            if it.own_confidence is not None and it.confidence is not None and \
                    abs(it.own_confidence - it.confidence) > 1e-6:
                conf += f" (own {_fmt_conf(it.own_confidence)})"
            lines = [f'<div class="card-body"><div class="name">{_e(it.name)}</div>',
                     f'<div class="meta">{_e(it.landmark or "unknown")} · confidence {_e(conf)}'
                     + (f" · by {_e(it.decided_by)}" if it.decided_by else "")
                     + (' <span class="badge">uncertain</span>' if it.uncertain(threshold) else "") + "</div>"]
            if it.taken_at:
                lines.append(f'<div class="meta">{_e(it.taken_at)}</div>')
            if it.companions:
                lines.append(f'<div class="meta">with {_e(", ".join(it.companions))}</div>')
            if it.error:
                lines.append(f'<div class="meta">{_e(it.error)}</div>')
            if it.keywords:
                lines.append(f'<div class="kw">{_e(", ".join(it.keywords))}</div>')
            if it.neighbours:
                refs = []
                for nb in it.neighbours:
                    ruri = ref_thumb(nb.path) if nb.path else None
                    pic = f'<img src="{_e(ruri)}" alt="{_e(nb.name)}">' if ruri else ""
                    cap = f"{_e(nb.name)} {nb.similarity:.2f}"
                    refs.append(f'<figure title="{_e(nb.path or nb.name)}">{pic}<figcaption>{cap}</figcaption></figure>')
                lines.append('<div class="refs">' + "".join(refs) + "</div>")
            lines.append("</div>")
            out.append(f'<article class="{cls}" data-path="{_e(it.path)}">{img}{"".join(lines)}</article>')
        out.append("</div></section>")
    if not items:
        out.append("<section><p>No scanned photos here. Run <code>ltag scan PATH</code> first.</p></section>")
    out.append("</body></html>")
    return "\n".join(out)


def attach_neighbours(items: Sequence[ReviewItem], catalog: Any, *, gallery: Any = None,
                      bundle_neighbours: Callable[[Any, Any], list[list[tuple[str, float]]]] | None = None,
                      k: int = 3) -> None:
    """Fill each item's nearest references from the catalog's stored features (no decoding).

    Taught landmarks: the ``k`` reference photos of the photo's landmark most similar to it (``gallery``, a
    :class:`~landmark_tagger.user_gallery.UserGallery`). Bundle landmarks: ``bundle_neighbours(emb, generic)``
    gives, per photo, the nearest landmarks and their similarities.
    """
    import numpy as np

    from landmark_tagger.user_gallery import is_user_label

    by_path = {it.path: it for it in items}
    if not by_path:
        return
    rows = catalog.rows("SELECT p.path, p.label, e.embedding, e.generic FROM photos p "
                        "JOIN embeddings e ON e.photo_id = p.id WHERE p.role = 'primary'")
    rows = [r for r in rows if r["path"] in by_path]
    bundle_rows = []
    for r in rows:
        it = by_path[r["path"]]
        if is_user_label(r["label"]) and gallery is not None and r["generic"] is not None and it.landmark:
            g = np.frombuffer(r["generic"], np.float32)
            if gallery.dim == len(g):
                it.neighbours = [Neighbour(it.landmark, s, ref.path) for ref, s in
                                 gallery.nearest_references(g, it.landmark, k)]
        else:
            bundle_rows.append(r)
    if bundle_neighbours is not None and bundle_rows:
        emb = np.stack([np.frombuffer(r["embedding"], np.float32) for r in bundle_rows])
        gen = None
        if all(r["generic"] is not None for r in bundle_rows):
            gen = np.stack([np.frombuffer(r["generic"], np.float32) for r in bundle_rows])
        for r, nbs in zip(bundle_rows, bundle_neighbours(emb, gen), strict=True):
            by_path[r["path"]].neighbours = [Neighbour(name, float(s)) for name, s in nbs[:k]]
