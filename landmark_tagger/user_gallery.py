"""The user's taught landmarks (``ltag learn``), kept beside the catalog.

The shipped bundle knows a few dozen landmarks; the user teaches more from a few photos each. Taught
landmarks are recognised with the bundle's ``generic`` output (the backbone's pooled features before the
ArcFace-trained projection), because the trained projection generalises badly to landmarks it never saw.

Scoring (one rule, measured in ``benchmarks/learn.py``):

* similarities are computed in a *whitened* space learned from the labelled background (below) and the taught
  references (:func:`gallery_whitening`): centred on their mean and whitened by the covariance of photos of the
  same landmark (the supervised "Lw" whitening of Radenović et al., :func:`learn_whitening`), then
  L2-normalised; without a labelled background, the raw generic features;
* a query's similarity to a taught landmark is its best cosine similarity among that landmark's
  references (k = 1);
* each landmark has its own threshold on that similarity (:func:`landmark_threshold`), derived from how
  close the nearest *other* taught landmark's references come to its references (its impostors), never
  lower than a global floor; its references' leave-one-out similarities are kept as its spread;
* background rule: photos of the bundle's own landmarks (generic features, from the bundle or from the
  catalog's confidently tagged photos) are kept as a background; a query whose best reference is not closer
  than its nearest background photo is not a taught landmark (its confidence is capped below the threshold);
* the similarity is mapped onto the bundle's confidence scale by :func:`to_bundle_confidence`, so that a
  taught landmark's threshold maps to exactly the bundle's threshold: ``--min-confidence``, review and
  sequence consensus mean one thing for both kinds of landmark. In the whitened space the confidence reaches 1
  at :data:`WHITENED_RISE` above the threshold (the bundle's own confident tags sit well above its threshold;
  a taught landmark clearly matched must be able to outbid a doubtful bundle tag).

Storage: one ``.npz`` file (numpy arrays + a UTF-8 JSON document stored as a ``uint8`` array; loaded with
``allow_pickle=False``), replaced atomically on every change. The same format is used by
``ltag landmarks export`` / ``import``.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from landmark_tagger.errors import LtagError

FORMAT = "ltag-user-gallery"
#: 2: learned whitening (``whiten_mean`` / ``whiten_proj`` arrays) and thresholds in the whitened space. A version 1
#: file still loads and scores with its raw-space thresholds until the next ``ltag learn`` re-derives them.
#: 3: a reference is identified by its content hash under ``"hash"`` (XXH3-128; versions 1-2 wrote ``"sha256"``,
#: still read, and those values keep working as identifiers).
FORMAT_VERSION = 3
LABEL_PREFIX = "user:"

#: Lowest threshold on the generic cosine similarity a taught landmark may get (the floor keeps photos of
#: landmarks nobody taught untagged when a landmark has no close impostors). Calibrated in
#: ``benchmarks/learn.py`` on the default bundle's ``generic`` features.
DEFAULT_MIN_SIMILARITY = 0.50
#: How far above its nearest impostor a landmark's threshold sits (generic cosine similarity).
DEFAULT_IMPOSTOR_MARGIN = 0.0
#: Optional: distractors also raise each landmark's threshold to this quantile of their best similarities to its
#: references (None: off; measured in benchmarks/learn.py, the per-query background rule below wins).
DEFAULT_DISTRACTOR_QUANTILE: float | None = None
#: Background rule: a photo is a taught landmark only if its best reference is closer than every background photo
#: (generic features of photos of the bundle's own landmarks) by at least this much; else its confidence is
#: capped just below the threshold.
DEFAULT_BACKGROUND_MARGIN = 0.0
#: Cosine similarity above which two feature vectors are taken for the same photo.
SAME_PHOTO = 0.995
#: Most background photos kept in the gallery file (float16).
MAX_BACKGROUND = 4000
#: Highest threshold a landmark may get, whatever its impostors (above this almost nothing matches).
MAX_THRESHOLD = 0.92
#: Whitened space (a background of at least :data:`MIN_WHITEN_PHOTOS` labelled photos): the floor, background
#: margin and confidence rise chosen with ``benchmarks/learn.py`` on its tuning draws.
WHITENED_MIN_SIMILARITY = 0.14
WHITENED_BACKGROUND_MARGIN = -0.04
#: In the whitened space a taught landmark's confidence reaches 1 this far above its threshold (raw space: at 1).
WHITENED_RISE = 0.25
#: Shrinkage of the intra-class covariance towards a multiple of the identity (fraction of its mean variance).
WHITEN_SHRINK = 1.0
#: Fewest labelled background photos (of at least 2 landmarks) to learn a whitening from; fewer: raw features.
MIN_WHITEN_PHOTOS = 100
#: The taught references join the whitening's photos, each counted this many times (labelled with its landmark):
#: how a taught landmark's own photos vary is damped too. Measured in benchmarks/learn_explore.py (1: no change).
REFERENCE_WEIGHT = 5
#: The bundle threshold assumed until the gallery is bound to a bundle (the scoring module's default).
DEFAULT_BUNDLE_THRESHOLD = 0.5
#: Below a landmark's threshold, confidence falls linearly to 0 over this much similarity.
CONFIDENCE_SPAN = 0.25


class UserGalleryError(LtagError):
    """The user gallery cannot be read, written or changed as asked."""


def label_for(name: str) -> str:
    """The catalog label id of a taught landmark: ``user:<name>``."""
    return LABEL_PREFIX + name


def is_user_label(label: str | None) -> bool:
    return bool(label) and str(label).startswith(LABEL_PREFIX)


def name_key(name: str) -> str:
    """Landmark names compare case-insensitively and ignore surrounding/double spaces."""
    return " ".join(name.split()).casefold()


def clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise UserGalleryError("A landmark needs a name, e.g. ltag learn \"Ilulissat Icefjord\" PHOTO...")
    if any(ord(c) < 32 or c in "|" for c in cleaned):
        raise UserGalleryError(f"Landmark names cannot contain control characters or '|': {cleaned!r}")
    if len(cleaned) > 200:
        raise UserGalleryError("Landmark names are limited to 200 characters.")
    return cleaned


def to_bundle_confidence(similarity: np.ndarray | float, threshold: np.ndarray | float,
                         bundle_threshold: float, rise: float | None = None) -> np.ndarray:
    """Map a taught landmark's similarity onto the bundle's confidence scale.

    Piecewise linear and monotonic in ``similarity``:

    * at the landmark's own ``threshold`` the confidence is exactly ``bundle_threshold`` (so a taught
      landmark is tagged exactly when the bundle's rule would tag at that confidence);
    * above it, confidence rises linearly to 1 at similarity 1 (or at ``threshold + rise``);
    * below it, confidence falls linearly to 0 over :data:`CONFIDENCE_SPAN` of similarity.

    Args:
        similarity: cosine similarity to the landmark's best reference, any shape.
        threshold: the landmark's threshold (broadcast against ``similarity``).
        bundle_threshold: the bundle's calibrated threshold on its confidence scale, in (0, 1).
        rise: how far above the threshold the confidence reaches 1 (None: at similarity 1).

    Returns:
        confidences in [0, 1], float32, the broadcast shape.
    """
    s = np.asarray(similarity, dtype=np.float64)
    s = np.where(s > 1.0 - 1e-5, 1.0, s)  # the reference photo itself (float32 rounding): confidence exactly 1
    t = np.asarray(threshold, dtype=np.float64)
    bt = float(bundle_threshold)
    width = np.maximum(1.0 - t, 1e-6) if rise is None else np.minimum(max(float(rise), 1e-6), np.maximum(1.0 - t, 1e-6))
    above = bt + (1.0 - bt) * (s - t) / width
    below = bt * (1.0 - (t - s) / CONFIDENCE_SPAN)
    out = np.where(s >= t, above, below)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def landmark_threshold(own: np.ndarray, impostors: np.ndarray | None, *, min_similarity: float,
                       margin: float = DEFAULT_IMPOSTOR_MARGIN) -> tuple[float, dict[str, float | None]]:
    """A taught landmark's threshold on the generic similarity, from its references and its impostors.

    Args:
        own: (R, G) the landmark's reference vectors (L2-normalised).
        impostors: (M, G) other landmarks' references and distractors, or None.
        min_similarity: the global floor.
        margin: how far above the closest impostor the threshold sits.

    Returns:
        (threshold, stats) where stats holds ``impostor`` (the closest impostor's best similarity to a
        reference; None without impostors) and ``loo_min`` / ``loo_median`` (leave-one-out: each
        reference's best similarity to the landmark's other references; None with one reference).
    """
    stats: dict[str, float | None] = {"impostor": None, "loo_min": None, "loo_median": None}
    if len(own) >= 2:
        s = own @ own.T
        np.fill_diagonal(s, -np.inf)
        loo = s.max(axis=1)
        stats["loo_min"] = float(loo.min())
        stats["loo_median"] = float(np.median(loo))
    t = float(min_similarity)
    if impostors is not None and len(impostors):
        imp = float((impostors @ own.T).max())
        stats["impostor"] = imp
        t = max(t, imp + margin)
    return min(t, MAX_THRESHOLD), stats


@dataclass
class Whitening:
    """A learned linear map of generic features: ``normalise((normalise(x) - mean) @ proj.T)``.

    Attributes:
        mean: (G,) the background's mean.
        proj: (d, G) the projection (``d == G``: no dimension reduction).
        info: how it was learned (method, photos, landmarks, shrinkage), saved with the gallery.
    """

    mean: np.ndarray
    proj: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.proj.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, G) generic features -> (N, d) whitened, L2-normalised float32."""
        z = (_normalise(x) - self.mean) @ self.proj.T
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def learn_whitening(x: np.ndarray, labels: np.ndarray | None, *, shrink: float = WHITEN_SHRINK,
                    min_photos: int = MIN_WHITEN_PHOTOS) -> Whitening | None:
    """Supervised whitening ("Lw", Radenović et al., cirtorch ``whitenlearn``) from labelled generic features.

    Centre on the mean of ``x``; whiten by the covariance of differences between photos of the same landmark
    (``2 m`` times each landmark's scatter over its ``m (m - 1)`` ordered pairs), shrunk towards
    ``shrink * trace / G`` times the identity so that directions the background never varies in stay finite.
    Directions in which photos of one landmark differ (light, viewpoint, season) are damped; directions that
    separate landmarks are kept. No dimension reduction: the PCA rotation of cirtorch's second step would not
    change a cosine similarity, so it is left out. Deterministic.

    Args:
        x: (N, G) generic features of photos of known landmarks (the background).
        labels: (N,) their landmark ids (any hashable values), or None.
        shrink: shrinkage of the intra-class covariance.
        min_photos: fewest photos with a label shared by another photo to learn anything.

    Returns:
        the whitening, or None without labels, with fewer than ``min_photos`` usable photos or fewer than two
        landmarks with two photos each.
    """
    if labels is None or x is None or len(x) != len(labels):
        return None
    xn = _normalise(x).astype(np.float64)
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    usable = counts[inverse] >= 2
    if int(usable.sum()) < min_photos or int((counts >= 2).sum()) < 2:
        return None
    g = xn.shape[1]
    scatter = np.zeros((g, g))
    pairs = 0
    for c in np.flatnonzero(counts >= 2):
        z = xn[inverse == c]
        zc = z - z.mean(axis=0)
        m = len(z)
        scatter += 2.0 * m * (zc.T @ zc)
        pairs += m * (m - 1)
    cov = scatter / pairs
    cov += float(shrink) * np.trace(cov) / g * np.eye(g)
    proj = np.linalg.inv(np.linalg.cholesky(cov))  # cov^-1/2 up to a rotation: proj @ cov @ proj.T = I
    info = {"method": "lw", "photos": int(usable.sum()), "landmarks": int((counts >= 2).sum()), "shrink": float(shrink)}
    return Whitening(xn.mean(axis=0).astype(np.float32), proj.astype(np.float32), info)


def gallery_whitening(background: np.ndarray, labels: np.ndarray | None, landmarks: list[tuple[str, np.ndarray]],
                      *, weight: int = REFERENCE_WEIGHT) -> Whitening | None:
    """The whitening of a user gallery: learned (:func:`learn_whitening`) from its labelled background plus each
    taught landmark's references, repeated ``weight`` times and labelled ``user:<name>``. None without labels."""
    if labels is None or background is None or not len(background) or len(labels) != len(background):
        return None
    xs, ys = [_normalise(background)], [np.asarray(labels).astype(str)]
    for name, vec in landmarks:
        if len(vec) and weight > 0:
            xs.append(np.repeat(_normalise(vec), weight, axis=0))
            ys.append(np.full(len(vec) * weight, label_for(name)))
    w = learn_whitening(np.concatenate(xs), np.concatenate(ys))
    if w is not None:
        w.info.update({"background": int(len(background)), "references": int(sum(len(v) for _, v in landmarks)),
                       "reference_weight": int(weight)})
    return w


@dataclass
class Reference:
    """One reference photo of a taught landmark."""

    content_hash: str  # fsutil.content_hash of the photo (SHA-256 hex for references taught before version 3)
    path: str
    added_at: str = ""


@dataclass
class UserLandmark:
    """A taught landmark: its display name, place in a hierarchy, coordinates and references."""

    name: str
    parent: str | None = None
    lat: float | None = None
    lon: float | None = None
    refs: list[Reference] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (R, G) generic features
    threshold: float = DEFAULT_MIN_SIMILARITY
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def label(self) -> str:
        return label_for(self.name)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent, "lat": self.lat, "lon": self.lon,
                "threshold": self.threshold, "stats": self.stats, "created_at": self.created_at,
                "refs": [{"hash": r.content_hash, "path": r.path, "added_at": r.added_at} for r in self.refs]}


@dataclass
class UserScores:
    """Best taught landmark per query photo.

    Attributes:
        index: (N,) index into :meth:`UserGallery.names` of the best landmark (by confidence), -1 when the
            gallery is empty.
        similarity: (N,) best-reference cosine similarity to that landmark.
        confidence: (N,) on the bundle's scale (see :func:`to_bundle_confidence`).
        ref_index: (N,) index of the best reference within that landmark.
    """

    index: np.ndarray
    similarity: np.ndarray
    confidence: np.ndarray
    ref_index: np.ndarray
    names: list[str]

    def name(self, i: int) -> str | None:
        k = int(self.index[i])
        return self.names[k] if k >= 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if n.size and np.all(np.abs(n - 1.0) < 1e-5):
        return x  # already unit length: keep the stored values bit for bit (export/import round trips)
    return x / np.maximum(n, 1e-12)


def _finite_or_none(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class UserGallery:
    """The taught landmarks (in memory). Load with :meth:`load`, change, then :meth:`save`.

    Attributes:
        model_id: the bundle whose ``generic`` features the references are (None while empty).
        bundle_threshold: that bundle's threshold (its confidence scale; set by :meth:`bind`, saved).
        min_similarity: the global floor of every landmark's threshold (default: :data:`DEFAULT_MIN_SIMILARITY` on
            raw features, :data:`WHITENED_MIN_SIMILARITY` once whitened).
        background_margin: the background rule's margin (likewise per space).
        rise: how far above its threshold a taught landmark's confidence reaches 1 (None: at similarity 1).
        distractors: (M, G) generic features of photos known to show none of the taught landmarks (photos of the
            bundle's own landmarks), set by :meth:`set_distractors` and saved (float16). They are the *background*:
            a photo closer to one of them than to a landmark's best reference is not that landmark.
        whitening: learned from the background and its landmark labels (:func:`learn_whitening`) by
            :meth:`set_distractors`, saved; None: raw generic features.
        legacy: loaded from a version 1 file (thresholds on raw features, no whitening) and not re-derived yet.
    """

    def __init__(self, model_id: str | None = None, *, min_similarity: float | None = None,
                 margin: float = DEFAULT_IMPOSTOR_MARGIN, bundle_threshold: float = DEFAULT_BUNDLE_THRESHOLD,
                 background_margin: float | None = None, rise: float | None = None):
        self.model_id = model_id
        self.bundle_threshold = float(bundle_threshold)
        self.enabled = True
        self._min_similarity = None if min_similarity is None else float(min_similarity)
        self._background_margin = None if background_margin is None else float(background_margin)
        self._rise = rise
        self.margin = float(margin)
        self.landmarks: dict[str, UserLandmark] = {}
        self.distractors = np.zeros((0, 0), np.float32)
        self.n_distractors = 0
        self.distractor_quantile = DEFAULT_DISTRACTOR_QUANTILE
        self.whitening: Whitening | None = None
        self.background_labels: np.ndarray | None = None  # (M,) str: the background's landmarks (whitening)
        self._fixed_whitening = False
        self._legacy: dict[str, float] | None = None  # a version 1 file's floor and background margin
        self._bg: np.ndarray | None = None
        self._flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- the similarity space and its parameters --------------------------------------------------
    @property
    def legacy(self) -> bool:
        """Loaded from a version 1 file (raw features, its own floor) and not re-derived since."""
        return self._legacy is not None

    @property
    def min_similarity(self) -> float:
        if self._min_similarity is not None:
            return self._min_similarity
        if self._legacy is not None:
            return self._legacy["min_similarity"]
        return WHITENED_MIN_SIMILARITY if self.whitening is not None else DEFAULT_MIN_SIMILARITY

    @min_similarity.setter
    def min_similarity(self, value: float | None) -> None:
        self._min_similarity = None if value is None else float(value)

    @property
    def background_margin(self) -> float:
        if self._background_margin is not None:
            return self._background_margin
        if self._legacy is not None:
            return self._legacy["background_margin"]
        return WHITENED_BACKGROUND_MARGIN if self.whitening is not None else DEFAULT_BACKGROUND_MARGIN

    @background_margin.setter
    def background_margin(self, value: float | None) -> None:
        self._background_margin = None if value is None else float(value)

    @property
    def rise(self) -> float | None:
        if self._rise is not None:
            return self._rise
        return WHITENED_RISE if self.whitening is not None else None

    @rise.setter
    def rise(self, value: float | None) -> None:
        self._rise = value

    def project(self, generic: np.ndarray) -> np.ndarray:
        """Generic features in the gallery's similarity space: whitened when there is a whitening, else as they
        are; L2-normalised rows."""
        if self.whitening is not None and generic.shape[-1] == self.whitening.dim:
            return self.whitening.apply(generic)
        return _normalise(generic)

    # -- queries --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.landmarks)

    def __contains__(self, name: str) -> bool:
        return name_key(name) in self.landmarks

    def get(self, name: str) -> UserLandmark | None:
        return self.landmarks.get(name_key(name))

    def names(self) -> list[str]:
        return [lm.name for lm in self.landmarks.values()]

    def by_label(self, label: str | None) -> UserLandmark | None:
        if not is_user_label(label):
            return None
        return self.get(str(label)[len(LABEL_PREFIX):])

    @property
    def dim(self) -> int | None:
        for lm in self.landmarks.values():
            if lm.vectors.size:
                return int(lm.vectors.shape[1])
        return None

    # -- changes --------------------------------------------------------------------------------
    def add(self, name: str, refs: list[Reference], vectors: np.ndarray, *, model_id: str,
            parent: str | None = None, lat: float | None = None, lon: float | None = None,
            recalibrate: bool = True) -> tuple[UserLandmark, int]:
        """Add references to a landmark (created if new); returns it and how many references were new.

        A reference already present (same content hash) is not added twice. ``parent`` / ``lat`` / ``lon`` replace
        the stored values when given. The whitening and the thresholds of every landmark are recomputed
        (``recalibrate=False``: not yet; call :meth:`calibrate` after the last of several adds).

        Raises:
            UserGalleryError: the vectors come from another model than the gallery's, or have another size.
        """
        name = clean_name(name)
        vectors = _normalise(vectors)
        if len(refs) != len(vectors):
            raise ValueError("one vector per reference")
        self._check_model(model_id, vectors.shape[1] if len(vectors) else None)
        self.model_id = model_id
        key = name_key(name)
        lm = self.landmarks.get(key)
        if lm is None:
            lm = UserLandmark(name=name, created_at=_now(), vectors=np.zeros((0, vectors.shape[1]), np.float32))
            self.landmarks[key] = lm
        if parent is not None:
            lm.parent = " ".join(parent.split()) or None
        if lat is not None and lon is not None:
            lm.lat, lm.lon = float(lat), float(lon)
        have = {r.content_hash for r in lm.refs}
        new_refs, new_vecs = [], []
        for r, v in zip(refs, vectors, strict=True):
            if r.content_hash in have:
                continue
            have.add(r.content_hash)
            new_refs.append(Reference(r.content_hash, r.path, r.added_at or _now()))
            new_vecs.append(v)
        if new_vecs:
            lm.refs.extend(new_refs)
            lm.vectors = np.concatenate([lm.vectors.reshape(-1, vectors.shape[1]), np.stack(new_vecs)]).astype(
                np.float32)
        if recalibrate:
            self.calibrate()
        return lm, len(new_refs)

    def remove(self, name: str) -> UserLandmark | None:
        """Forget a landmark; returns it (None if it was not taught)."""
        lm = self.landmarks.pop(name_key(name), None)
        if lm is not None:
            if not self.landmarks:
                self.model_id = None
            self.calibrate()
        return lm

    def has_legacy_refs(self) -> bool:
        """Whether some reference is still identified by a SHA-256 value (taught before format version 3)."""
        return any(len(r.content_hash) == 64 for lm in self.landmarks.values() for r in lm.refs)

    def rekey(self, old: str, new: str) -> int:
        """Identify the references ``old`` (a SHA-256 value) by ``new`` (the same photo's content hash); returns
        how many changed."""
        n = 0
        for lm in self.landmarks.values():
            for r in lm.refs:
                if r.content_hash == old:
                    r.content_hash, n = new, n + 1
        return n

    def remove_reference(self, content_hash: str) -> list[str]:
        """Remove a photo from every landmark's references (a corrected photo); returns the landmarks it left.
        A landmark left without references is forgotten."""
        touched = []
        for key, lm in list(self.landmarks.items()):
            keep = [i for i, r in enumerate(lm.refs) if r.content_hash != content_hash]
            if len(keep) != len(lm.refs):
                touched.append(lm.name)
                lm.refs = [lm.refs[i] for i in keep]
                lm.vectors = lm.vectors[keep]
                if not lm.refs:
                    del self.landmarks[key]
        if touched:
            self.calibrate()
        return touched

    def set_distractors(self, vectors: np.ndarray | None, labels: np.ndarray | None = None, *,
                        whitening: Whitening | None = None) -> None:
        """Use these generic features as the background (see :attr:`distractors`; at most :data:`MAX_BACKGROUND`,
        spread evenly), learn the whitening from them and their landmark ``labels`` (:func:`learn_whitening`; none
        without labels) and recompute every threshold in the new space.

        Args:
            vectors: (M, G) generic features of photos of the bundle's landmarks, or None to drop the background.
            labels: (M,) their landmarks (any ids), or None.
            whitening: use this one from now on instead of learning it (benchmarks: one per set of references).
        """
        self._fixed_whitening = whitening is not None
        self.whitening = whitening
        self.background_labels = None
        if vectors is None or not len(vectors):
            self.distractors = np.zeros((0, 0), np.float32)
        else:
            v = _normalise(vectors)
            self._check_model(self.model_id, v.shape[1])
            lab = None if labels is None or len(labels) != len(v) else np.asarray(labels).astype(str)
            if len(v) > MAX_BACKGROUND:
                keep = np.linspace(0, len(v) - 1, MAX_BACKGROUND).astype(np.int64)
                v, lab = v[keep], None if lab is None else lab[keep]
            self.distractors, self.background_labels = v, lab
        self._legacy = None
        self._bg = None
        self.calibrate()

    def _check_model(self, model_id: str | None, dim: int | None) -> None:
        if self.landmarks and self.model_id and model_id and model_id != self.model_id:
            raise UserGalleryError(
                f"The taught landmarks were learned with model {self.model_id}, not {model_id}. Re-teach them with "
                "this model (ltag learn NAME PHOTO... for each; `ltag landmarks` lists them) or use the old model.")
        if dim is not None and self.dim is not None and dim != self.dim:
            raise UserGalleryError(f"Feature size {dim} does not match the gallery's {self.dim}.")

    def calibrate(self) -> None:
        """Re-learn the whitening (:func:`gallery_whitening`, when the background's labels are known) and recompute
        every landmark's threshold (see :func:`landmark_threshold`).

        Impostors: the other taught landmarks' references and the distractors. Without distractors at hand
        (``forget`` does not load the model), a landmark keeps the closest distractor similarity it recorded
        last time (``stats['distractor']``), so its threshold never drops for lack of them. Distractors count by
        the :data:`DEFAULT_DISTRACTOR_QUANTILE` of their best similarities to the landmark's references."""
        self._flat = None
        self._bg = None
        items = list(self.landmarks.values())
        if not self._fixed_whitening and self.background_labels is not None and self.distractors.size:
            self.whitening = gallery_whitening(self.distractors, self.background_labels,
                                               [(lm.name, lm.vectors) for lm in items if lm.vectors.size])
        proj = [self.project(lm.vectors) if lm.vectors.size else lm.vectors for lm in items]
        dis = self.project(self.distractors) if self.distractor_quantile is not None and self.distractors.size else None
        for i, lm in enumerate(items):
            others = [proj[j] for j, o in enumerate(items) if j != i and o.vectors.size]
            impostors = np.concatenate(others) if others else None
            if self.distractor_quantile is None:
                dist: float | None = None
            elif dis is not None and lm.vectors.size:
                best = (dis @ proj[i].T).max(axis=1)
                dist = float(np.quantile(best, self.distractor_quantile))
            else:
                dist = _finite_or_none(lm.stats.get("distractor")) if lm.stats else None
            thr, stats = landmark_threshold(proj[i], impostors, min_similarity=self.min_similarity,
                                            margin=self.margin)
            stats["distractor"] = dist
            if dist is not None:
                thr = min(max(thr, dist + self.margin), MAX_THRESHOLD)
            lm.threshold, lm.stats = thr, stats

    # -- scoring --------------------------------------------------------------------------------
    def _flatten(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._flat is None:
            self._bg = None
            items = list(self.landmarks.values())
            if not items:
                self._flat = (np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))
            else:
                refs = self.project(np.concatenate([lm.vectors for lm in items]).astype(np.float32))
                owner = np.concatenate([np.full(len(lm.vectors), k) for k, lm in enumerate(items)]).astype(np.int64)
                thr = np.array([lm.threshold for lm in items], np.float32)
                self._flat = (refs, owner, thr)
        return self._flat

    def _background(self) -> np.ndarray | None:
        """The background in the similarity space, without the taught references themselves (a photo the bundle
        tagged that the user then taught as a reference must not block its own landmark)."""
        if self._bg is None:
            raw = np.concatenate([lm.vectors for lm in self.landmarks.values() if lm.vectors.size] or
                                 [np.zeros((0, self.distractors.shape[1]), np.float32)])
            keep = ((self.distractors @ raw.T).max(axis=1) < SAME_PHOTO if len(raw)
                    else np.ones(len(self.distractors), bool))
            self._bg = self.project(self.distractors[keep])
        return self._bg if len(self._bg) else None

    def similarities(self, generic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, L) best-reference similarity per landmark (in the gallery's similarity space, see :meth:`project`)
        and (N, L) the index of that reference."""
        return self._similarities(self.project(generic))

    def _similarities(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        refs, owner, _ = self._flatten()
        n_l = len(self.landmarks)
        best = np.full((len(q), n_l), -1.0, np.float32)
        arg = np.zeros((len(q), n_l), np.int64)
        if not n_l:
            return best, arg
        s = q @ refs.T  # (N, R)
        start = 0
        for k, lm in enumerate(self.landmarks.values()):
            block = s[:, start:start + len(lm.vectors)]
            arg[:, k] = block.argmax(axis=1)
            best[:, k] = block[np.arange(len(q)), arg[:, k]]
            start += len(lm.vectors)
        return best, arg

    def score(self, generic: np.ndarray, bundle_threshold: float, chunk: int = 8192) -> UserScores:
        """Best taught landmark per query (by confidence on the bundle's scale).

        Args:
            generic: (N, G) the queries' generic features.
            bundle_threshold: the bundle's threshold (its confidence scale).
        """
        names = self.names()
        n = len(generic)
        idx = np.full(n, -1, np.int64)
        sim = np.zeros(n, np.float32)
        conf = np.zeros(n, np.float32)
        ref = np.zeros(n, np.int64)
        if not names or n == 0:
            return UserScores(idx, sim, conf, ref, names)
        _, _, thr = self._flatten()
        bg = self._background() if self.distractors.size and self.distractors.shape[1] == generic.shape[1] else None
        for a in range(0, n, chunk):
            q = self.project(generic[a:a + chunk])
            best, arg = self._similarities(q)
            c = to_bundle_confidence(best, thr[None, :], bundle_threshold, self.rise)
            if bg is not None:
                # background rule: closer to a photo of another (bundle) landmark than to the references
                nearest_bg = (q @ bg.T).max(axis=1)
                blocked = best < (nearest_bg + self.background_margin)[:, None]
                c = np.where(blocked, np.minimum(c, np.float32(bundle_threshold * 0.98)), c)
            k = c.argmax(axis=1)
            rows = np.arange(len(k))
            idx[a:a + chunk] = k
            sim[a:a + chunk] = best[rows, k]
            conf[a:a + chunk] = c[rows, k]
            ref[a:a + chunk] = arg[rows, k]
        return UserScores(idx, sim, conf, ref, names)

    def bind(self, bundle: Any) -> bool:
        """Use the gallery with ``bundle``: take its threshold (confidence scale). A gallery taught with another
        model is disabled (its features mean nothing to this one) and False is returned."""
        import logging

        self.bundle_threshold = float(bundle.threshold)
        self.enabled = not (len(self) and self.model_id and self.model_id != bundle.model_id)
        if not self.enabled:
            logging.getLogger(__name__).warning(
                "taught landmarks were learned with model %s, not %s: ignored until re-taught", self.model_id,
                bundle.model_id)
        elif len(self) and self.whitening is None:
            # taught before whitening existed (or without a labelled background): re-derive in memory when the
            # bundle ships its references' generic features; saved by the next ltag learn
            bg = bundle_background(bundle)
            if bg is not None:
                self.set_distractors(*bg)
                if self.whitening is not None:
                    logging.getLogger(__name__).info(
                        "taught landmarks re-derived with the whitening learned from %s's references", bundle.model_id)
        return self.enabled

    def decide_generic(self, generic: np.ndarray) -> list[Any]:
        """The recognizer's hook (``recognizer.UserGalleryLike``): per row of ``generic`` (N, G), the best taught
        landmark as a ``Decision`` with its confidence on the bundle's scale (also below the threshold: the
        recognizer applies the threshold), or None when nothing is taught."""
        from landmark_tagger.recognizer import Decision

        n = len(generic)
        if not self.enabled or not len(self) or n == 0 or generic.shape[1] != self.dim:
            return [None] * n
        sc = self.score(generic, self.bundle_threshold)
        return [Decision(label_for(sc.names[k]), sc.names[k], float(c), "user")
                for k, c in zip(sc.index.tolist(), sc.confidence.tolist(), strict=True)]

    def nearest_references(self, generic: np.ndarray, name: str, k: int = 3) -> list[tuple[Reference, float]]:
        """The ``k`` references of landmark ``name`` most similar to one query (for review)."""
        lm = self.get(name)
        if lm is None or not lm.refs:
            return []
        s = self.project(lm.vectors) @ self.project(generic)[0]
        order = np.argsort(-s)[:k]
        return [(lm.refs[i], float(s[i])) for i in order]

    # -- storage --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        items = list(self.landmarks.values())
        dim = self.dim or (self.distractors.shape[1] if self.distractors.size else 0)
        vectors = (np.concatenate([lm.vectors for lm in items]).astype(np.float32) if items
                   else np.zeros((0, dim), np.float32))
        self.n_distractors = int(len(self.distractors)) if self.distractors.size else self.n_distractors
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "model_id": self.model_id,
               "min_similarity": self.min_similarity, "margin": self.margin,
               "bundle_threshold": self.bundle_threshold, "distractors": self.n_distractors,
               "background_margin": self.background_margin, "rise": self.rise,
               "whitening": self.whitening.info if self.whitening is not None else None, "saved_at": _now(),
               "landmarks": [lm.to_json() for lm in items]}
        buf = io.BytesIO()
        background = (self.distractors.astype(np.float16) if self.distractors.size
                      else np.zeros((0, dim), np.float16))
        arrays = {"vectors": vectors, "background": background}
        if self.background_labels is not None and len(self.background_labels) == len(self.distractors):
            arrays["background_labels"] = np.asarray(self.background_labels).astype(str)
        if self.whitening is not None:
            arrays["whiten_mean"] = self.whitening.mean.astype(np.float32)
            arrays["whiten_proj"] = self.whitening.proj.astype(np.float32)
        meta = np.frombuffer(json.dumps(doc, ensure_ascii=False).encode("utf-8"), np.uint8)
        np.savez_compressed(buf, meta=meta, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "user gallery") -> UserGallery:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
                vectors = np.asarray(z["vectors"], np.float32)
                background = np.asarray(z["background"], np.float32) if "background" in z.files else None
                w_mean = np.asarray(z["whiten_mean"], np.float32) if "whiten_mean" in z.files else None
                w_proj = np.asarray(z["whiten_proj"], np.float32) if "whiten_proj" in z.files else None
                bg_labels = np.asarray(z["background_labels"]).astype(str) if "background_labels" in z.files else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as e:
            raise UserGalleryError(f"{source} is not an ltag user gallery ({e}).") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserGalleryError(f"{source} is not an ltag user gallery (no '{FORMAT}' header).")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise UserGalleryError(f"{source} was written by a newer ltag (version {meta.get('version')}); upgrade ltag.")
        version = int(meta.get("version", 0))
        g = cls(meta.get("model_id"), margin=float(meta.get("margin", DEFAULT_IMPOSTOR_MARGIN)),
                bundle_threshold=float(meta.get("bundle_threshold", DEFAULT_BUNDLE_THRESHOLD)))
        if version < 2:
            # version 1: raw features, its own floor and background margin; thresholds as saved until re-derived
            g._legacy = {"min_similarity": float(meta.get("min_similarity", DEFAULT_MIN_SIMILARITY)),
                         "background_margin": float(meta.get("background_margin", DEFAULT_BACKGROUND_MARGIN))}
        start = 0
        try:
            for d in meta.get("landmarks", []):
                refs = [Reference(str(r["hash"] if "hash" in r else r["sha256"]), str(r.get("path", "")), str(r.get("added_at", "")))
                        for r in d.get("refs", [])]
                vec = vectors[start:start + len(refs)]
                if len(vec) != len(refs):
                    raise UserGalleryError(f"{source} is damaged: fewer vectors than references.")
                start += len(refs)
                lm = UserLandmark(name=clean_name(d["name"]), parent=d.get("parent") or None,
                                  lat=_finite_or_none(d.get("lat")), lon=_finite_or_none(d.get("lon")),
                                  refs=refs, vectors=_normalise(vec) if len(vec) else vec,
                                  threshold=float(d.get("threshold", g.min_similarity)),
                                  stats=d.get("stats") or {}, created_at=str(d.get("created_at", "")))
                g.landmarks[name_key(lm.name)] = lm
        except (KeyError, TypeError, ValueError) as e:
            raise UserGalleryError(f"{source} is damaged ({e}).") from e
        if start != len(vectors):
            raise UserGalleryError(f"{source} is damaged: {len(vectors) - start} vectors without a reference.")
        g.n_distractors = int(meta.get("distractors", 0) or 0)
        if background is not None and background.size:
            g.distractors = background / np.maximum(np.linalg.norm(background, axis=1, keepdims=True), 1e-12)
            if bg_labels is not None and len(bg_labels) == len(background) and version >= 2:
                g.background_labels = bg_labels
        if w_mean is not None and w_proj is not None and version >= 2:
            dim = g.dim or (g.distractors.shape[1] if g.distractors.size else None)
            if (w_mean.ndim != 1 or w_proj.ndim != 2 or w_proj.shape[1] != len(w_mean)
                    or (dim is not None and len(w_mean) != dim) or not np.isfinite(w_proj).all()
                    or not np.isfinite(w_mean).all()):
                raise UserGalleryError(f"{source} is damaged: its whitening does not fit its features.")
            info = meta.get("whitening") if isinstance(meta.get("whitening"), dict) else {}
            g.whitening = Whitening(w_mean, w_proj, info)
        if g.legacy and len(g):
            import logging

            logging.getLogger(__name__).info(
                "%s was saved by an older ltag: its landmarks score on raw generic features until re-derived in the "
                "whitened space (the next ltag learn does it; a scan with a bundle that ships generic features does it "
                "in memory)", source)
        return g  # thresholds as saved

    @classmethod
    def load(cls, path: Path | str) -> UserGallery:
        """Load the gallery at ``path``; an empty gallery when the file does not exist."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as e:
            raise UserGalleryError(f"Cannot read the user gallery {p}: {e.strerror or e}") from e
        return cls.from_bytes(data, source=str(p))

    def save(self, path: Path | str) -> None:
        """Write the gallery atomically (temp file + fsync + rename)."""
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(p, self.to_bytes())
        except OSError as e:
            raise UserGalleryError(f"Cannot write the user gallery {p}: {e.strerror or e}") from e

    def merge(self, other: UserGallery) -> tuple[int, int]:
        """Import ``other``'s landmarks (references merged by content hash); returns (landmarks added, refs added)."""
        if not other.landmarks:
            return 0, 0
        if not self.landmarks:
            self.bundle_threshold = other.bundle_threshold
        if not self.distractors.size and other.distractors.size and (not self.landmarks or
                                                                     self.model_id == other.model_id):
            # no background here yet: take the exported one and the whitening learned from it
            self.distractors, self.whitening = other.distractors, other.whitening
            self.background_labels, self._legacy = other.background_labels, None
            self.n_distractors, self._bg = other.n_distractors, None
        n_lm = n_ref = 0
        for lm in other.landmarks.values():
            if lm.name not in self:
                n_lm += 1
            _, added = self.add(lm.name, lm.refs, lm.vectors, model_id=other.model_id or "", parent=lm.parent,
                                lat=lm.lat, lon=lm.lon, recalibrate=False)
            n_ref += added
        self.calibrate()
        return n_lm, n_ref


def bundle_background(bundle: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The generic features of ``bundle``'s reference photos and their label indices (the optional ``generic``
    array of its ``gallery.npz``), or None when it does not ship them."""
    getter = getattr(bundle, "gallery_generic", None)
    gallery = getattr(bundle, "gallery", None)
    if not callable(getter) or not callable(gallery):
        return None
    gen = getter()
    if gen is None or not len(gen):
        return None
    _, labels = gallery()
    if labels is None or len(labels) != len(gen):
        return None
    return gen, np.asarray(labels)


def _atomic_write(path: Path, data: bytes) -> None:
    from landmark_tagger.fsutil import atomic_write

    atomic_write(path, data)
