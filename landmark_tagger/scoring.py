"""The one scoring rule: gallery neighbours -> label + raw score -> calibrated confidence.

Pure numpy. The runtime (:mod:`landmark_tagger.recognizer`) and ``training/evaluate`` call the same functions,
so a threshold calibrated in training means the same at run time.

A query's ``k`` nearest gallery references (cosine similarity, best first) are turned into one label and a
raw score by a *rule*:

``top1``      label and similarity of the nearest reference.
``best2``     per label, the mean of its two best similarities (a label with one reference among the ``k``
              counts the ``k``-th similarity as its second); the best label wins. One stray neighbour (label
              noise, a lookalike) cannot carry a decision on its own.
``vote``      similarity-weighted vote share (weights ``max(s, 0) ** 3``).
``margin``    ``best2`` of the winner minus ``best2`` of the runner-up.
``best2m``    ``best2`` plus half the margin: rewards a clear winner as well as a close match.

The raw score maps to the confidence scale with a monotone piecewise-linear :class:`Calibration` stored in
labels.json; the bundle's threshold is on that scale (default 0.5 = the raw score that gave >= 99% precision
on held-out calibration photos mixed with an open-set stand-in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("top1", "best2", "vote", "margin", "best2m")


@dataclass(frozen=True)
class Calibration:
    """Monotone piecewise-linear map from raw score to confidence (``raw`` increasing, ``conf`` in [0, 1])."""

    raw: tuple[float, ...]
    conf: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.raw) != len(self.conf) or len(self.raw) < 2:
            raise ValueError("calibration needs >= 2 knots with as many raw as conf values")
        if any(b <= a for a, b in zip(self.raw, self.raw[1:], strict=False)):
            raise ValueError("calibration raw knots must be strictly increasing")
        if any(b < a for a, b in zip(self.conf, self.conf[1:], strict=False)) or not (
                0.0 <= self.conf[0] and self.conf[-1] <= 1.0):
            raise ValueError("calibration confidence knots must be non-decreasing within [0, 1]")

    def confidence(self, raw: np.ndarray) -> np.ndarray:
        """Confidence of raw scores (clipped to the end knots' confidences outside the knots)."""
        return np.interp(np.asarray(raw, dtype=np.float64), self.raw, self.conf)

    def raw_for(self, confidence: float) -> float:
        """The raw score that maps to ``confidence`` (inverse on the increasing part)."""
        conf, raw = np.asarray(self.conf), np.asarray(self.raw)
        keep = np.r_[True, np.diff(conf) > 0]
        return float(np.interp(confidence, conf[keep], raw[keep]))

    def to_dict(self) -> dict:
        return {"raw": [float(x) for x in self.raw], "confidence": [float(x) for x in self.conf]}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(tuple(float(x) for x in d["raw"]), tuple(float(x) for x in d["confidence"]))


@dataclass(frozen=True)
class ScoringRule:
    """The bundle's ``scoring`` section: rule, neighbours searched, calibration, threshold (confidence scale)."""

    rule: str
    k: int
    calibration: Calibration
    threshold: float

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown scoring rule {self.rule!r}; known: {', '.join(RULES)}")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is outside [0, 1]")

    def to_dict(self) -> dict:
        return {"rule": self.rule, "k": self.k, "calibration": self.calibration.to_dict(), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> ScoringRule:
        return cls(str(d["rule"]), int(d["k"]), Calibration.from_dict(d["calibration"]), float(d["threshold"]))


def exclude_labels(sims: np.ndarray, labels: np.ndarray, exclude: np.ndarray, k: int,
                   site: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop each query's hits of one label (``exclude[i]``) and keep the first ``k`` remaining.

    The open-set stand-in: a query scored against a gallery without its own landmark must come out unknown.
    With ``site`` (label index -> site id), every label of the excluded label's site goes too: landmarks a few
    hundred metres apart (the Qutub complex) share views, and a photo of an unknown landmark does not show a
    known one next to it. Missing hits are padded with similarity -1 and label -1.
    """
    n = sims.shape[0]
    out_s = np.full((n, k), -1.0, dtype=np.float32)
    out_l = np.full((n, k), -1, dtype=np.int64)
    if site is not None:
        site = np.asarray(site)
        hit_site = np.where(labels >= 0, site[np.clip(labels, 0, None)], -1)
        labels_cmp, exclude_cmp = hit_site, site[np.asarray(exclude)]
    else:
        labels_cmp, exclude_cmp = labels, exclude
    for i in range(n):
        keep = (labels_cmp[i] != exclude_cmp[i]) & (labels[i] >= 0)
        s, lab = sims[i][keep][:k], labels[i][keep][:k]
        out_s[i, :len(s)], out_l[i, :len(lab)] = s, lab
    return out_s, out_l


def sites_from_coordinates(lat: list[float | None], lon: list[float | None], km: float = 0.3) -> np.ndarray:
    """Site id per label: labels whose coordinates lie within ``km`` of each other (single linkage) share one."""
    n = len(lat)
    site = np.arange(n)

    def dist(i: int, j: int) -> float:
        p1, p2 = np.radians([lat[i], lon[i]]), np.radians([lat[j], lon[j]])
        a = np.sin((p2[0] - p1[0]) / 2) ** 2 + np.cos(p1[0]) * np.cos(p2[0]) * np.sin((p2[1] - p1[1]) / 2) ** 2
        return float(6371.0 * 2 * np.arcsin(np.sqrt(a)))

    for i in range(n):
        for j in range(i + 1, n):
            if None not in (lat[i], lon[i], lat[j], lon[j]) and dist(i, j) <= km:
                old, new = max(site[i], site[j]), min(site[i], site[j])
                site[site == old] = new
    return site


def label_scores(sims: np.ndarray, labels: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Best label and raw score per query.

    Args:
        sims: (N, k) cosine similarities of each query's nearest references, best first (-1 padding).
        labels: (N, k) label index of each reference (-1 padding).
        rule: one of :data:`RULES`.

    Returns:
        ``(label (N,) int64, raw (N,) float64)``; label -1 and raw -inf for a query without references.
    """
    sims = np.asarray(sims, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = sims.shape if sims.ndim == 2 else (0, 0)
    best = np.full(n, -1, dtype=np.int64)
    raw = np.full(n, -np.inf)
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; known: {', '.join(RULES)}")
    if n == 0 or k == 0:
        return best, raw
    if rule == "top1":
        ok = labels[:, 0] >= 0
        best[ok], raw[ok] = labels[ok, 0], sims[ok, 0]
        return best, raw
    for i in range(n):
        valid = labels[i] >= 0
        if not valid.any():
            continue
        s, lab = sims[i][valid], labels[i][valid]
        floor = s[-1]  # the k-th similarity bounds any reference that did not make the list
        uniq = np.unique(lab)
        if rule == "vote":
            w = np.maximum(s, 0.0) ** 3
            tot = w.sum()
            share = np.array([w[lab == u].sum() for u in uniq]) / (tot if tot > 0 else 1.0)
            j = int(np.argmax(share))
            best[i], raw[i] = uniq[j], share[j]
            continue
        two = np.empty(len(uniq))
        for j, u in enumerate(uniq):
            su = s[lab == u]  # already sorted best first
            two[j] = 0.5 * (su[0] + (su[1] if len(su) > 1 else floor))
        order = np.argsort(-two, kind="stable")
        first = two[order[0]]
        second = two[order[1]] if len(order) > 1 else min(floor, first)
        best[i] = uniq[order[0]]
        if rule == "best2":
            raw[i] = first
        elif rule == "margin":
            raw[i] = first - second
        else:  # best2m
            raw[i] = first + 0.5 * (first - second)
    return best, raw


def fit_calibration(raw_threshold: float, raw_unknown: np.ndarray, raw_known: np.ndarray,
                    threshold_conf: float = 0.5) -> Calibration:
    """Knots: the median open-set raw score -> 0, ``raw_threshold`` -> ``threshold_conf``, the 99th percentile of
    known raw scores -> 1 (each kept strictly increasing)."""
    lo = float(np.median(raw_unknown)) if len(raw_unknown) else raw_threshold - 0.2
    hi = float(np.percentile(raw_known, 99)) if len(raw_known) else raw_threshold + 0.2
    lo = min(lo, raw_threshold - 1e-3)
    hi = max(hi, raw_threshold + 1e-3)
    return Calibration((lo, raw_threshold, hi), (0.0, threshold_conf, 1.0))


def decide(sims: np.ndarray, labels: np.ndarray, scoring: ScoringRule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the bundle's rule: ``(label (N,), confidence (N,), accepted (N,) bool)``; label -1 where not accepted."""
    best, raw = label_scores(sims, labels, scoring.rule)
    conf = np.where(np.isfinite(raw), scoring.calibration.confidence(np.where(np.isfinite(raw), raw, 0.0)), 0.0)
    accepted = (conf >= scoring.threshold - 1e-9) & (best >= 0)  # float rounding at the threshold knot
    return np.where(accepted, best, -1), conf, accepted
