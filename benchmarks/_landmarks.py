"""Shared by benchmarks/learn.py and benchmarks/sequence.py: the landmark photos, a bundle's features of them
(cached), which photos the bundle has seen, and its own decisions.

Photos are read from ``../shared/data/landmarks/<label>/*.jpg`` (never copied). A photo counts as *seen* by the
bundle when its recognition embedding is (near-)identical to a reference in the bundle's gallery: those photos
are never used as queries. Labels missing from the bundle are its held-out labels ("new" landmarks).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = Path(os.environ.get("LTAG_LANDMARKS", ROOT.parent / "shared" / "data" / "landmarks"))
CACHE = ROOT / "runs" / "bench-cache"
HOLDOUT_BUNDLE = ROOT / "runs" / "holdout5"


@dataclass
class PhotoSet:
    paths: list[str]
    labels: list[str]  # folder name = label id
    model_id: str
    threshold: float
    holdout: list[str]  # labels the bundle does not know
    bundle: object = None
    recognizer: object = None
    emb: np.ndarray | None = None
    gen: np.ndarray | None = None
    in_gallery: np.ndarray | None = None
    cand: list[str | None] = field(default_factory=list)  # bundle's best label (any confidence)
    conf: np.ndarray | None = None
    is_known: np.ndarray | None = None

    def known_by_label(self) -> dict[str, np.ndarray]:
        """Query photos (not in the gallery) of the bundle's labels."""
        out: dict[str, list[int]] = {}
        for i, lab in enumerate(self.labels):
            if self.is_known[i] and not self.in_gallery[i]:
                out.setdefault(lab, []).append(i)
        return {k: np.array(v) for k, v in out.items()}

    def unknown_by_label(self) -> dict[str, np.ndarray]:
        out: dict[str, list[int]] = {}
        for i, lab in enumerate(self.labels):
            if not self.is_known[i]:
                out.setdefault(lab, []).append(i)
        return {k: np.array(v) for k, v in out.items()}


def find_bundle(model: str | None) -> Path | None:
    """``--model``, else the holdout bundle under runs/holdout5 (any folder there with a labels.json), else None
    (the shipped default)."""
    if model:
        return Path(model)
    if HOLDOUT_BUNDLE.is_dir():
        for p in sorted(HOLDOUT_BUNDLE.rglob("labels.json")):
            if (p.parent / "model.onnx").is_file():
                return p.parent
    return None


def load_photo_set(model: str | None = None, *, exclude_labels: list[str] | None = None) -> PhotoSet:
    """The photos and a bundle. ``exclude_labels`` drops those labels' references from the bundle's gallery
    in memory (an approximation of a bundle trained without them, used only when no holdout bundle exists)."""
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.recognizer import Recognizer

    if not LANDMARKS.is_dir():
        sys.exit(f"landmark photos not found at {LANDMARKS}")
    bundle = load_bundle(find_bundle(model))
    if exclude_labels:
        emb, idx = bundle.gallery()
        drop = {bundle.label_ids.index(lab) for lab in exclude_labels if lab in bundle.label_ids}
        keep = ~np.isin(idx, list(drop))
        bundle._gallery = (emb[keep], idx[keep])
    paths, labels = [], []
    for d in sorted(LANDMARKS.iterdir()):
        if d.is_dir():
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in (".jpg", ".jpeg"):
                    paths.append(str(f))
                    labels.append(d.name)
    known_ids = set(bundle.label_ids)
    holdout = sorted({lab for lab in labels if lab not in known_ids} | set(exclude_labels or ()))
    ps = PhotoSet(paths, labels, bundle.model_id, float(bundle.threshold), holdout, bundle=bundle)
    ps.recognizer = Recognizer(bundle)
    ps.is_known = np.array([lab in known_ids and lab not in holdout for lab in labels])
    return ps


def _split_file(bundle: object) -> Path | None:
    """The training split (``{"label/file.jpg": "train" | "calib" | "report"}``): ``LTAG_SPLIT``, else a
    ``split.json`` named in or beside the bundle's provenance."""
    env = os.environ.get("LTAG_SPLIT")
    if env:
        return Path(env)
    prov = getattr(bundle, "provenance", {}) or {}
    stack = [prov]
    while stack:
        d = stack.pop()
        for k, v in d.items():
            if isinstance(v, dict):
                stack.append(v)
            elif isinstance(v, str) and v.endswith("split.json") and Path(v).is_file():
                return Path(v)
            elif isinstance(v, str) and k in ("run_dir", "run") and (Path(v) / "split.json").is_file():
                return Path(v) / "split.json"
    for cand in (Path(bundle.path) / "split.json", Path(bundle.path).parent / "split.json"):
        if cand.is_file():
            return cand
    return None


def bundle_features(ps: PhotoSet, *, batch: int = 32) -> None:
    """Fill ``emb``, ``gen`` (cached per model id), ``in_gallery``, ``cand`` and ``conf``."""
    from landmark_tagger import decode, preprocess

    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(("\n".join(ps.paths) + ps.model_id).encode()).hexdigest()[:16]
    cache = CACHE / f"{ps.model_id}-{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        ps.emb, ps.gen = z["emb"], z["gen"]
    else:
        rec = ps.recognizer
        spec = ps.bundle.preprocess
        side = preprocess.min_decode_side(spec)
        embs, gens = [], []
        t0 = time.perf_counter()
        for a in range(0, len(ps.paths), batch):
            arrays = [preprocess.prepare(decode.decode_for_model(p, side), spec) for p in ps.paths[a:a + batch]]
            e, g = rec.embed(arrays)
            embs.append(e)
            gens.append(g)
            done = a + len(arrays)
            print(f"\rembedding {done}/{len(ps.paths)} ({done / (time.perf_counter() - t0):.1f} photos/s)",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        ps.emb, ps.gen = np.concatenate(embs), np.concatenate(gens)
        np.savez(cache, emb=ps.emb, gen=ps.gen)
    split = _split_file(ps.bundle)
    if split is not None:
        # the training split: every photo not in a held-out split counts as seen (gallery / training)
        import json

        assign = json.loads(split.read_text())
        rel = ["/".join(Path(p).parts[-2:]) for p in ps.paths]
        ps.in_gallery = np.array([assign.get(r, "train") not in ("calib", "report", "val", "test") for r in rel])
        print(f"seen photos from {split}: {int(ps.in_gallery.sum())}", file=sys.stderr)
    else:
        g_emb, _ = ps.bundle.gallery()
        best = np.zeros(len(ps.paths), np.float32)
        for a in range(0, len(ps.paths), 1024):
            best[a:a + 1024] = (ps.emb[a:a + 1024] @ g_emb.T).max(axis=1)
        ps.in_gallery = best > 0.995
        print(f"seen photos by gallery match: {int(ps.in_gallery.sum())}", file=sys.stderr)
    rec = ps.recognizer
    saved = rec.threshold
    rec.threshold = 0.0
    try:
        ds = rec.decide(ps.emb, None)
    finally:
        rec.threshold = saved
    ps.cand = [d.label for d in ds]
    ps.conf = np.array([d.confidence for d in ds], np.float64)
