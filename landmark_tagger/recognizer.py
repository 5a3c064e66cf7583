"""Recognition at run time: onnxruntime embeddings + faiss gallery search + the scoring rule -> Decision.

User-taught landmarks plug in through :class:`UserGalleryLike`: any object with
``decide_generic(generic (N, G)) -> list[Decision | None]`` that returns, per photo, its best user landmark
and a confidence *on the bundle's scale* (``None`` when it has no candidate). The recogniser applies one
threshold to both sources and keeps the more confident accepted decision; user landmarks win ties.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from landmark_tagger.scoring import label_scores

if TYPE_CHECKING:
    from landmark_tagger.bundle import Bundle

log = logging.getLogger(__name__)

_EPS = 1e-9  # confidence equal to the threshold (up to float rounding) is accepted


@dataclass(frozen=True)
class Decision:
    """What ltag decided for one photo.

    ``label`` is the landmark id (None = unknown), ``name`` its display name, ``confidence`` the calibrated
    score of the best candidate in [0, 1] (also for unknown photos: how close the best guess came), and
    ``source`` where the candidate came from: ``"bundle"`` or ``"user"``.
    """

    label: str | None
    name: str | None
    confidence: float
    source: str


@runtime_checkable
class UserGalleryLike(Protocol):
    """What the recogniser needs from a user gallery (landmark_tagger.user_gallery implements it)."""

    def decide_generic(self, generic: np.ndarray) -> list[Decision | None]:
        """Best user landmark per row of ``generic`` (N, G), confidence on the bundle's scale, or None."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of an (N, D) array (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Recognizer:
    """Embeds prepared photos and decides their landmark.

    Args:
        bundle: a loaded bundle.
        threshold: decision threshold on the confidence scale (default: the bundle's).
        user_gallery: optional :class:`UserGalleryLike` searched together with the bundle gallery.
        providers: onnxruntime execution providers (default CPU; e.g. ``["CUDAExecutionProvider"]``
            with the ``[gpu]`` extra, falling back to CPU when unavailable).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core).
        batch_size: rows (views) per onnxruntime call.
        fixed_rows: run every onnxruntime call with exactly this many rows (the session's shapes fixed, see
            :meth:`Bundle.session`: cheaper per image), a short last call padded with copies of its last row;
            ``batch_size`` is then ignored. For callers that embed one photo (its views) at a time.
    """

    def __init__(self, bundle: Bundle, *, threshold: float | None = None, user_gallery: UserGalleryLike | None = None,
                 providers: list[str] | None = None, threads: int | None = None, batch_size: int = 32,
                 fixed_rows: int | None = None) -> None:
        from landmark_tagger.fsutil import deferred_signals

        with deferred_signals():  # native module initialisation: a Ctrl-C is delivered once it is in
            import faiss

        self.bundle = bundle
        self.threshold = bundle.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is outside [0, 1]")
        self.user_gallery = user_gallery
        self.batch_size = fixed_rows or batch_size
        self.session = bundle.session(providers, threads, batch=fixed_rows)
        # whether the session really has a fixed batch (a model with other axis names stays dynamic)
        self._pad_to = fixed_rows if fixed_rows and self.session.get_inputs()[0].shape[0] == fixed_rows else None
        emb, self.gallery_labels = bundle.gallery()
        self.index = faiss.IndexFlatIP(emb.shape[1])
        self.index.add(np.ascontiguousarray(emb, dtype=np.float32))
        self._ids = bundle.label_ids
        self._names = [lab.name for lab in bundle.labels]

    # ------------------------------------------------------------------ embedding
    def embed(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embed photos.

        Args:
            arrays: one (V, 3, S, S) float32 array per photo (``preprocess.prepare``); V may differ per photo.

        Returns:
            ``(embeddings (N, D), generic (N, G))``, float32, each the mean of the photo's views, re-normalised.
        """
        if not arrays:
            return (np.zeros((0, self.bundle.embedding_dim), np.float32),
                    np.zeros((0, self.bundle.generic_dim), np.float32))
        counts = [a.shape[0] for a in arrays]
        rows = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays])
        emb_parts, gen_parts = [], []
        for start in range(0, rows.shape[0], self.batch_size):
            chunk = rows[start:start + self.batch_size]
            n = chunk.shape[0]
            if self._pad_to and n < self._pad_to:  # a fixed-batch session: fill up with copies, keep the n first
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._pad_to - n, axis=0)])
            e, g = self.session.run(["embeddings", "generic"], {"images": chunk})
            emb_parts.append(e[:n])
            gen_parts.append(g[:n])
        emb, gen = np.concatenate(emb_parts), np.concatenate(gen_parts)
        bounds = np.cumsum([0] + counts)
        emb = np.stack([emb[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        gen = np.stack([gen[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return l2_normalize(emb), l2_normalize(gen)

    # ------------------------------------------------------------------ search and decide
    def neighbours(self, emb: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest bundle references: ``(similarity (N, k), label index (N, k))``, -1 padded."""
        k = min(k or self.bundle.scoring.k, self.index.ntotal)
        sims, idx = self.index.search(np.ascontiguousarray(emb, dtype=np.float32), k)
        labels = np.where(idx >= 0, self.gallery_labels[np.clip(idx, 0, None)], -1)
        return sims, labels

    def decide_bundle(self, emb: np.ndarray) -> list[Decision]:
        """Bundle-only decisions for (N, D) embeddings."""
        sims, labels = self.neighbours(emb)
        best, raw = label_scores(sims, labels, self.bundle.scoring.rule)
        finite = np.isfinite(raw)
        conf = np.where(finite, self.bundle.scoring.calibration.confidence(np.where(finite, raw, 0.0)), 0.0)
        out = []
        for b, c in zip(best.tolist(), conf.tolist(), strict=True):
            if b >= 0 and c >= self.threshold - _EPS:
                out.append(Decision(self._ids[b], self._names[b], float(c), "bundle"))
            else:
                out.append(Decision(None, None, float(c), "bundle"))
        return out

    def decide(self, emb: np.ndarray, generic: np.ndarray | None = None) -> list[Decision]:
        """Decide each photo from its embedding (and generic features, for the user gallery).

        The more confident accepted candidate wins; user landmarks win ties. A photo with no accepted
        candidate gets ``label=None`` with the best candidate's confidence.
        """
        bundle_dec = self.decide_bundle(emb)
        if self.user_gallery is None or generic is None:
            return bundle_dec
        user_dec = self.user_gallery.decide_generic(np.asarray(generic, dtype=np.float32))
        if len(user_dec) != len(bundle_dec):
            raise ValueError("user gallery returned a different number of decisions")
        out = []
        for b, u in zip(bundle_dec, user_dec, strict=True):
            if u is None:
                out.append(b)
                continue
            u_ok = u.label is not None and u.confidence >= self.threshold - _EPS
            if u_ok and (b.label is None or u.confidence >= b.confidence):
                out.append(Decision(u.label, u.name, float(u.confidence), "user"))
            elif b.label is not None:
                out.append(b)
            else:
                best = u if u.confidence > b.confidence else b
                out.append(Decision(None, None, float(best.confidence), best.source))
        return out

    def recognize(self, arrays: Sequence[np.ndarray]) -> list[Decision]:
        """``decide(*embed(arrays))``."""
        emb, gen = self.embed(arrays)
        return self.decide(emb, gen)
