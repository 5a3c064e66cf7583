"""Add the optional ``generic`` array to an existing bundle's gallery.npz without retraining.

``python -m training add-generic --bundle DIR --data DIR --run RUN`` embeds the training-split photos of the
run the bundle was exported from (``RUN/split.json``), through the runtime path (``decode_for_model``,
``preprocess.prepare`` with the bundle's views, ``Recognizer.embed``), matches them in order to the stored
gallery rows (the export keeps the training photos in dataset order and drops a few as label noise), checks
that every stored embedding is reproduced (cosine >= ``min_cos``), and rewrites gallery.npz with the same
``embeddings`` and ``labels`` arrays plus ``generic`` (float16, L2-normalised rows). Nothing else in the
bundle changes. Fails (writes nothing) when the photos cannot be matched.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def match_in_order(stored: np.ndarray, stored_labels: np.ndarray, cand: np.ndarray, cand_labels: np.ndarray,
                   min_cos: float) -> np.ndarray:
    """Index into ``cand`` of each stored row: the stored rows are an ordered subsequence of the candidates.

    Greedy: a candidate is taken when its label matches and its cosine with the next stored row is >= ``min_cos``,
    otherwise it counts as dropped. Raises ValueError when the stored rows are not such a subsequence.
    """
    out = np.full(len(stored), -1, dtype=np.int64)
    i = 0
    for j in range(len(stored)):
        while i < len(cand) and not (cand_labels[i] == stored_labels[j] and float(cand[i] @ stored[j]) >= min_cos):
            i += 1
        if i == len(cand):
            best = float((cand @ stored[j]).max())
            raise ValueError(f"gallery row {j} matches no remaining photo (best cosine {best:.4f} < {min_cos})")
        out[j] = i
        i += 1
    return out


def add_generic(bundle_dir: Path, data: Path, run: Path, *, min_cos: float = 0.999, threads: int | None = None,
                dry_run: bool = False) -> dict:
    """Compute and store the gallery's generic features; returns a report (counts, cosines, sizes)."""
    from landmark_tagger.bundle import GALLERY_FILE, _load_gallery, _load_generic, load_bundle
    from landmark_tagger.decode import decode_for_model
    from landmark_tagger.preprocess import min_decode_side, prepare
    from landmark_tagger.recognizer import Recognizer
    from training.data import scan_dataset

    bundle_dir, run = Path(bundle_dir), Path(run)
    bundle = load_bundle(bundle_dir)
    gal_path = bundle_dir / GALLERY_FILE
    with np.load(gal_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    stored = arrays["embeddings"].astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    stored_labels = arrays["labels"].astype(np.int64)
    split = json.loads((run / "split.json").read_text())
    index = {lid: i for i, lid in enumerate(bundle.label_ids)}
    cands = [s for s in scan_dataset(Path(data)) if split.get(s.key) == "train" and s.label in index]
    log.info("%d gallery rows; %d training photos of the bundle's labels in %s", len(stored), len(cands), run)
    rec = Recognizer(bundle, threads=threads)
    spec, side = bundle.preprocess, min_decode_side(bundle.preprocess)
    embs, gens, t0 = [], [], time.time()
    for start in range(0, len(cands), 16):
        batch = [prepare(decode_for_model(s.path, side), spec) for s in cands[start:start + 16]]
        e, g = rec.embed(batch)
        embs.append(e)
        gens.append(g)
        if (start // 16) % 20 == 0:
            log.info("embedded %d/%d (%.1f photos/s)", start + len(batch), len(cands),
                     (start + len(batch)) / (time.time() - t0))
    emb, gen = np.concatenate(embs), np.concatenate(gens)
    cand_labels = np.array([index[s.label] for s in cands])
    rows = match_in_order(stored, stored_labels, emb, cand_labels, min_cos)
    cos = np.sum(emb[rows] * stored, axis=1)
    nearest_same = float(np.mean((stored @ emb.T).argmax(1) == rows))
    report = {"gallery_rows": len(stored), "candidates": len(cands), "dropped_by_export": len(cands) - len(stored),
              "cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "argmax_agrees": nearest_same,
              "size_before": gal_path.stat().st_size}
    if not dry_run:
        arrays["generic"] = gen[rows].astype(np.float16)
        fd, tmp = tempfile.mkstemp(prefix=".gallery.", suffix=".npz", dir=bundle_dir)
        os.close(fd)
        try:
            np.savez_compressed(tmp, **arrays)
            emb, _ = _load_gallery(Path(tmp), bundle.embedding_dim, len(bundle.labels))  # validates
            _load_generic(Path(tmp), emb.shape[0], bundle.generic_dim)
            os.replace(tmp, gal_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        b = load_bundle(bundle_dir)
        assert b.gallery_generic() is not None and b.gallery_generic().shape == (len(stored), b.generic_dim)
        report["size_after"] = gal_path.stat().st_size
    return report
