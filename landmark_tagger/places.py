"""Offline reverse geocoding: GPS -> country / region / nearest town, and the place keywords ltag writes.

Uses the reverse_geocoder package's GeoNames table (places with >= 1,000 inhabitants, shipped with the package;
nothing is downloaded) in single-process mode. The table is loaded once, lazily, on the first lookup (about a
second); the package's "Loading formatted geocoded file..." line is kept off stdout so ``--json`` output stays
clean. Its k-d tree works in degrees, so the few nearest candidates are re-ranked by great-circle distance
(which matters far north: Ilulissat, Tromsø).

A photo more than :data:`MAX_PLACE_KM` from any town gets no place at all (a ship at sea is not in the
nearest country), and the town is left out beyond :data:`MAX_CITY_KM`.
"""

from __future__ import annotations

import contextlib
import io
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
_geocoder: Any = None


def _load() -> Any:
    """The reverse_geocoder table and k-d tree, loaded once (single process, no pool, nothing on stdout)."""
    global _geocoder
    if _geocoder is None:
        with _lock:
            if _geocoder is None:
                import reverse_geocoder

                with contextlib.redirect_stdout(io.StringIO()):
                    _geocoder = reverse_geocoder.RGeocoder(mode=1, verbose=False)
    return _geocoder


def _nearest(lat: float, lon: float) -> tuple[dict[str, str] | None, float]:
    rg = _load()
    k = min(_CANDIDATES, len(rg.locations))
    _, indices = rg.tree.query([(lat, lon)], k=k)
    best: dict[str, str] | None = None
    best_km = math.inf
    for i in list(indices[0]) if k > 1 else [indices[0]]:
        row = rg.locations[int(i)]
        try:
            km = distance_km(lat, lon, float(row["lat"]), float(row["lon"]))
        except (KeyError, TypeError, ValueError):
            continue
        if km < best_km:
            best, best_km = row, km
    return best, best_km


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None
