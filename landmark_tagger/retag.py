"""Re-decide scanned photos from their stored features, without decoding a single photo.

After ``ltag learn`` (or ``forget``, or a new threshold) every photo already in the catalog can be decided
again from the ``embeddings`` table (recognition embedding + generic features, float32 blobs): the blobs of
all rows are stacked into two matrices in one pass, decided in chunks by the recognizer (bundle gallery and
user gallery together), optionally adjusted by sequence consensus, and only the rows whose decision changed
are updated (one transaction) and, with ``write=True``, written into the files through :class:`writer.Writer`
exactly like ``scan`` (only ltag's own keywords change; undo records first; a run of kind ``scan`` with
``{"retag": true}`` that ``ltag undo`` reverts).

``redecide`` is the core that ``scan --retag`` calls for the unchanged photos it walked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landmark_tagger.catalog import Catalog, now_iso

log = logging.getLogger(__name__)

CHUNK = 4096
_ROWS_SQL = ("SELECT p.id, p.path, p.group_key, p.label, p.landmark, p.confidence, p.own_confidence, p.decided_by, "
             "p.taken_at, p.gps_lat, p.gps_lon, p.country, p.country_code, p.region, p.city, e.embedding, e.generic "
             "FROM photos p JOIN embeddings e ON e.photo_id = p.id "
             "WHERE e.model_id = ? AND p.role = 'primary' AND p.status IN ('tagged', 'unknown')")


@dataclass
class NewDecision:
    """A photo's re-decided outcome (what ``scan`` stores): ``label`` None = unknown."""

    label: str | None
    name: str | None
    confidence: float
    own_confidence: float
    source: str  # model | user_gallery | sequence


@dataclass
class RetagReport:
    rows: int = 0  # photos re-decided
    changed: int = 0  # whose tag changed (landmark or unknown)
    rescored: int = 0  # same tag, new confidence
    written: int = 0
    failed: int = 0
    seconds_decide: float = 0.0
    seconds_total: float = 0.0
    run_id: int | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)  # path, old, new, confidence
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("rows", "changed", "rescored", "written", "failed", "seconds_decide",
                                               "seconds_total", "run_id", "changes", "problems")}


def _stack(blobs: Sequence[bytes | None]) -> np.ndarray | None:
    if not blobs or any(b is None for b in blobs):
        return None
    first = len(blobs[0])
    if any(len(b) != first for b in blobs):
        return None
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), first // 4)


def _decide(recognizer: Any, emb: np.ndarray, gen: np.ndarray | None) -> list[Any]:
    out: list[Any] = []
    for a in range(0, len(emb), CHUNK):
        out.extend(recognizer.decide(emb[a:a + CHUNK], None if gen is None else gen[a:a + CHUNK]))
    return out


def candidates(recognizer: Any, emb: np.ndarray, gen: np.ndarray | None) -> list[Any]:
    """Each photo's best label whether or not it passes the threshold (the recognizer run at threshold 0:
    both sources always propose, the more confident wins, user landmarks win ties)."""
    saved = recognizer.threshold
    recognizer.threshold = 0.0
    try:
        return _decide(recognizer, emb, gen)
    finally:
        recognizer.threshold = saved


def apply_sequence(cands: list[Any], times: Sequence[str | None], lat: Sequence[float | None],
                   lon: Sequence[float | None], threshold: float, config: Any = None) -> list[NewDecision]:
    """Sequence consensus over candidate decisions (see :func:`candidates`) -> final decisions."""
    from landmark_tagger.sequence import consensus, parse_times

    own = np.array([float(d.confidence) for d in cands], dtype=np.float64)
    lat_a = np.array([np.nan if v is None else float(v) for v in lat])
    lon_a = np.array([np.nan if v is None else float(v) for v in lon])
    adj = consensus(parse_times(list(times)), [d.label for d in cands], own, threshold, lat=lat_a, lon=lon_a,
                    config=config)
    out = []
    for d, c_own, c in zip(cands, own, adj, strict=True):
        tagged_own = d.label is not None and c_own >= threshold
        tagged = d.label is not None and c >= threshold
        src = "sequence" if tagged != tagged_own else d.source
        out.append(NewDecision(d.label if tagged else None, d.name if tagged else None, float(c), float(c_own), src))
    return out


def _plain(decisions: list[Any]) -> list[NewDecision]:
    return [NewDecision(d.label, d.name if d.label else None, float(d.confidence), float(d.confidence), d.source)
            for d in decisions]


def _load(catalog: Catalog, model_id: str) -> tuple[list[dict[str, Any]], np.ndarray | None, np.ndarray | None]:
    """Rows (without blobs) of every primary photo decided with ``model_id``, and their stacked features."""
    cur = catalog.conn.execute(_ROWS_SQL, (model_id,))
    cols = [c[0] for c in cur.description][:-2]
    rows, embs, gens = [], [], []
    for r in cur:
        rows.append(dict(zip(cols, r[:-2], strict=True)))
        embs.append(r[-2])
        gens.append(r[-1])
    if not rows:
        return rows, None, None
    emb = _stack(embs)
    if emb is None:
        raise ValueError("stored embeddings of different sizes: rescan with one model")
    return rows, emb, _stack(gens)


def _new_decisions(recognizer: Any, rows: list[dict[str, Any]], emb: np.ndarray, gen: np.ndarray | None,
                   use_seq: bool) -> list[NewDecision]:
    if use_seq:
        return apply_sequence(candidates(recognizer, emb, gen), [r["taken_at"] for r in rows],
                              [r["gps_lat"] for r in rows], [r["gps_lon"] for r in rows], float(recognizer.threshold))
    return _plain(_decide(recognizer, emb, gen))


def redecide(catalog: Catalog, recognizer: Any, photo_ids: Sequence[int] | None = None, *,
             sequence: bool | None = None) -> dict[int, NewDecision]:
    """Re-decide photos from stored features (no decoding): ``{photo id: decision}``.

    Args:
        catalog: the catalog.
        recognizer: a :class:`~landmark_tagger.recognizer.Recognizer` (its user gallery included).
        photo_ids: only these photos (None: every primary photo decided with the recognizer's model).
        sequence: apply sequence consensus (None: :data:`landmark_tagger.sequence.DEFAULT_ENABLED`). Neighbours
            are looked up among all the catalog's photos with stored features, not only ``photo_ids``.
    """
    from landmark_tagger import sequence as seq

    use_seq = seq.DEFAULT_ENABLED if sequence is None else sequence
    rows, emb, gen = _load(catalog, recognizer.bundle.model_id)
    if not rows:
        return {}
    wanted = None if photo_ids is None else set(photo_ids)
    if not use_seq and wanted is not None:
        keep = np.array([r["id"] in wanted for r in rows])
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
        emb, gen = emb[keep], (None if gen is None else gen[keep])
        if not rows:
            return {}
    new = _new_decisions(recognizer, rows, emb, gen, use_seq)
    return {r["id"]: d for r, d in zip(rows, new, strict=True) if wanted is None or r["id"] in wanted}


def _place_keywords(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    if not row.get("country"):
        return [], []
    from landmark_tagger import places

    return places.place_keywords(places.Place(row["country"] or "", row.get("country_code") or "", row.get("region"),
                                              row.get("city")))


def retag(catalog: Catalog, recognizer: Any, *, write: bool = True, sequence: bool | None = None,
          sidecar_style: str = "adobe", sidecar_only: bool = False, keep_mtime: bool = False,
          progress: Callable[[int, int], None] | None = None) -> RetagReport:
    """Re-decide every scanned photo from stored features and apply the changed decisions (see module doc).

    Photos whose tag changed get new ltag keywords (written now with ``write=True``, else marked
    ``write_status = 'pending'`` for ``ltag write``); photos whose tag stayed only get the new confidence.
    Per-file write problems are reported in the report, never raised.
    """
    from landmark_tagger.writer import Writer, desired_keywords

    t0 = time.perf_counter()
    rep = RetagReport()
    model_id = recognizer.bundle.model_id
    from landmark_tagger import sequence as seq

    rows, emb, gen = _load(catalog, model_id)
    rep.rows = len(rows)
    if not rows:
        rep.seconds_total = time.perf_counter() - t0
        return rep
    t1 = time.perf_counter()
    decided = _new_decisions(recognizer, rows, emb, gen, seq.DEFAULT_ENABLED if sequence is None else sequence)
    new = {r["id"]: d for r, d in zip(rows, decided, strict=True)}
    rep.seconds_decide = time.perf_counter() - t1
    changed: list[tuple[dict[str, Any], NewDecision]] = []
    rescored: list[tuple[Any, ...]] = []
    for row in rows:
        d = new.get(row["id"])
        if d is None:
            continue
        if d.label != row["label"] or (d.label is None) != (row["landmark"] is None):
            changed.append((row, d))
        elif row["confidence"] is None or abs(float(row["confidence"]) - d.confidence) > 1e-6 or \
                row["decided_by"] != d.source:
            rescored.append((d.confidence, d.own_confidence, d.source, row["group_key"]))
    rep.changed, rep.rescored = len(changed), len(rescored)
    with catalog.transaction() as conn:
        conn.executemany("UPDATE photos SET confidence = ?, own_confidence = ?, decided_by = ? WHERE group_key = ?",
                         rescored)
    if not changed:
        rep.seconds_total = time.perf_counter() - t0
        return rep
    if not write:  # decide only: one transaction, ``ltag write`` applies them later
        updates = []
        for row, d in changed:
            pf, ph = _place_keywords(row)
            flat, hier = desired_keywords(d.name if d.label else None, pf, ph)
            updates.append((d.name if d.label else None, d.label, d.confidence, d.own_confidence, d.source,
                            "tagged" if d.label else "unknown", json.dumps([*flat, *hier]), row["group_key"]))
            rep.changes.append({"path": row["path"], "old": row["landmark"], "new": updates[-1][0],
                                "confidence": round(d.confidence, 4)})
        with catalog.transaction() as conn:
            conn.executemany("UPDATE photos SET landmark = ?, label = ?, confidence = ?, own_confidence = ?, "
                             "decided_by = ?, status = ?, ltag_keywords = ?, write_status = 'pending' "
                             "WHERE group_key = ?", updates)
        rep.seconds_total = time.perf_counter() - t0
        return rep
    run_id = catalog.start_run("scan", {"retag": True, "write": write, "changed": len(changed),
                                        "keep_mtime": keep_mtime})
    rep.run_id = run_id
    writer = Writer(catalog, run_id, sidecar_style=sidecar_style, sidecar_only=sidecar_only, keep_mtime=keep_mtime)
    now = now_iso()
    for n, (row, d) in enumerate(changed):
        pf, ph = _place_keywords(row)
        flat, hier = desired_keywords(d.name if d.label else None, pf, ph)
        cols_update = {"landmark": d.name if d.label else None, "label": d.label, "confidence": d.confidence,
                       "own_confidence": d.own_confidence, "decided_by": d.source,
                       "status": "tagged" if d.label else "unknown", "ltag_keywords": json.dumps([*flat, *hier])}
        rep.changes.append({"path": row["path"], "old": row["landmark"], "new": cols_update["landmark"],
                            "confidence": round(d.confidence, 4)})
        files = catalog.rows("SELECT path, kind, owned_keywords, suppressed_keywords FROM photos WHERE group_key = ?",
                             (row["group_key"],))
        cache: dict[str, Any] = {}
        for f in files:
            upd = dict(cols_update)
            out = writer.write(f["path"], f["kind"], flat, hier, owned_before=json.loads(f["owned_keywords"]),
                               suppressed_before=json.loads(f["suppressed_keywords"]),
                               props={"ModelId": model_id, "Landmark": upd["landmark"] or "",
                                      "Label": d.label or "", "Confidence": f"{d.confidence:.4f}"},
                               cache=cache)
            upd.update(write_status=out.write_status, write_target=out.target,
                       owned_keywords=json.dumps(out.owned), suppressed_keywords=json.dumps(out.suppressed),
                       keywords=json.dumps(out.flat), hier_keywords=json.dumps(out.hier))
            if out.status == "written":
                rep.written += 1
                upd["written_at"] = now
                upd.update(out.photo_file_columns(f["path"]))
            elif out.status in ("failed", "readonly"):
                rep.failed += 1
                rep.problems.append(f"{f['path']}: {out.error}")
            sets = ", ".join(f"{k} = ?" for k in upd)
            catalog.conn.execute(f"UPDATE photos SET {sets} WHERE path = ?", [*upd.values(), f["path"]])
        if progress is not None:
            progress(n + 1, len(changed))
    if run_id is not None:
        catalog.finish_run(run_id, {"retag": True, "rows": rep.rows, "changed": rep.changed, "written": rep.written,
                                    "failed": rep.failed})
    rep.seconds_total = time.perf_counter() - t0
    return rep
