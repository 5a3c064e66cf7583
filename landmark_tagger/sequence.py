"""Sequence consensus: photos shot minutes apart (and close together, when both have GPS) usually show the
same landmark, so confident neighbours in capture time lift or lower a photo's confidence.

For photo *i* with candidate label *l_i* and its own confidence *c_i* (on the bundle's scale, threshold *T*),
its neighbours are the photos *j* taken within ``window_s`` seconds whose GPS (when both photos have one) is
within ``max_km``. Only *confident* neighbours vote (``c_j >= T``, judged on their own confidence, so that
consensus never feeds on itself); each vote is weighted by ``exp(-|dt| / tau_s) * (c_j - T + floor)``.
With ``S`` the weight of votes for *l_i* and ``O`` the weight of votes for other labels:

    c'_i = clip(c_i + lift * tanh(S) * S / (S + O) - lower * tanh(O) * O / (S + O), 0, 1)

so a photo among agreeing confident neighbours gains at most ``lift`` and one among disagreeing neighbours
loses at most ``lower``; without confident neighbours nothing changes. The catalog keeps both ``own_confidence``
(*c_i*) and ``confidence`` (*c'_i*), and ``decided_by = 'sequence'`` where consensus changed whether the photo
is tagged. ``benchmarks/sequence.py`` measures precision and coverage with and without it; it is on by
default only if it helps there (:data:`DEFAULT_ENABLED`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

#: Whether retag (and ``scan --retag``) apply consensus unless told otherwise. On: benchmarks/sequence.py measured
#: coverage 0.81 -> 0.93 with precision 0.982 -> 0.981 (within its interval) on the holdout bundle (docs/learn.md).
DEFAULT_ENABLED = True


@dataclass(frozen=True)
class SequenceConfig:
    """Parameters of sequence consensus (confidences on the bundle's scale)."""

    window_s: float = 15 * 60  # neighbours: taken at most this far apart
    tau_s: float = 5 * 60  # vote weight decays with the time gap
    max_km: float = 1.0  # and, when both photos have GPS, at most this far apart
    lift: float = 0.25  # most a photo's confidence can rise
    lower: float = 0.1  # most it can fall
    floor: float = 0.05  # a neighbour just at the threshold still votes with this weight


def parse_times(values: list[str | None]) -> np.ndarray:
    """ISO 8601 capture times (``YYYY-MM-DDTHH:MM:SS``, local time) -> seconds as float64 (NaN when unknown)."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if not v:
            continue
        try:
            dt = datetime.fromisoformat(str(v)[:19])
        except ValueError:
            continue
        # Naive local times: compare as if UTC (only differences matter).
        out[i] = (dt - datetime(1970, 1, 1)).total_seconds()
    return out


def _haversine_km(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def consensus(times: np.ndarray, labels: list[str | None], confidences: np.ndarray, threshold: float, *,
              lat: np.ndarray | None = None, lon: np.ndarray | None = None,
              config: SequenceConfig | None = None) -> np.ndarray:
    """Adjusted confidences (N,) from each photo's own confidence and its neighbours' (see module docstring).

    Args:
        times: (N,) capture times in seconds (NaN: unknown; such photos are left as they are).
        labels: N candidate labels (the best label whether or not it passed the threshold; None: none).
        confidences: (N,) own confidences of those labels.
        threshold: the bundle's threshold.
        lat, lon: (N,) GPS in degrees (NaN: unknown), optional.
        config: parameters.

    Returns:
        (N,) float32 adjusted confidences; equal to ``confidences`` where no confident neighbour exists.
    """
    cfg = config or SequenceConfig()
    t = np.asarray(times, dtype=np.float64)
    c = np.asarray(confidences, dtype=np.float64)
    n = len(t)
    out = c.copy()
    if n == 0:
        return out.astype(np.float32)
    lat_a = np.full(n, np.nan) if lat is None else np.asarray(lat, dtype=np.float64)
    lon_a = np.full(n, np.nan) if lon is None else np.asarray(lon, dtype=np.float64)
    has_gps = np.isfinite(lat_a) & np.isfinite(lon_a) & ~((lat_a == 0) & (lon_a == 0))
    # Integer label codes (None -> -1).
    codes: dict[str, int] = {}
    lab = np.array([codes.setdefault(x, len(codes)) if x else -1 for x in labels], dtype=np.int64)
    known = np.isfinite(t)
    order = np.argsort(np.where(known, t, np.inf), kind="stable")
    ts = t[order]
    m = int(known.sum())  # known times come first in ``order``
    voter = (c >= threshold) & (lab >= 0)
    weight_c = np.where(voter, c - threshold + cfg.floor, 0.0)
    lo = 0
    hi = 0
    for pos in range(m):
        i = order[pos]
        while ts[lo] < ts[pos] - cfg.window_s:
            lo += 1
        while hi < m and ts[hi] <= ts[pos] + cfg.window_s:
            hi += 1
        if lab[i] < 0:
            continue
        nb = order[lo:hi]
        nb = nb[(nb != i) & voter[nb]]
        if not len(nb):
            continue
        if has_gps[i]:
            g = has_gps[nb]
            if g.any():
                far = np.zeros(len(nb), bool)
                far[g] = _haversine_km(lat_a[i], lon_a[i], lat_a[nb[g]], lon_a[nb[g]]) > cfg.max_km
                nb = nb[~far]
                if not len(nb):
                    continue
        w = np.exp(-np.abs(t[nb] - t[i]) / cfg.tau_s) * weight_c[nb]
        same = lab[nb] == lab[i]
        s = float(w[same].sum())
        o = float(w[~same].sum())
        tot = s + o
        if tot <= 0:
            continue
        delta = cfg.lift * math.tanh(s) * (s / tot) - cfg.lower * math.tanh(o) * (o / tot)
        out[i] = min(1.0, max(0.0, c[i] + delta))
    return out.astype(np.float32)


def decided_by_sequence(own: np.ndarray, adjusted: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) bool: where consensus changed whether the photo is tagged."""
    return (np.asarray(own) >= threshold) != (np.asarray(adjusted) >= threshold)
