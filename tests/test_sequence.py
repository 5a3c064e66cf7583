"""Sequence consensus: confident neighbours in capture time (and GPS) lift or lower a photo's confidence."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_tagger.sequence import SequenceConfig, consensus, decided_by_sequence, parse_times

T = 0.5


def _burst(start: str, n: int, step_s: int) -> list[str]:
    t0 = parse_times([start])[0]
    from datetime import datetime, timedelta

    base = datetime(1970, 1, 1) + timedelta(seconds=float(t0))
    return [(base + timedelta(seconds=i * step_s)).isoformat() for i in range(n)]


def test_parse_times_tolerates_missing_and_broken_values():
    t = parse_times(["2024-05-01T10:00:00", None, "garbage", "2024-05-01T10:01:30"])
    assert t[3] - t[0] == 90 and np.isnan(t[1]) and np.isnan(t[2])


def test_agreeing_neighbours_lift_an_uncertain_photo():
    times = parse_times(_burst("2024-05-01T10:00:00", 5, 60))
    labels = ["taj"] * 5
    own = np.array([0.9, 0.85, 0.45, 0.8, 0.95])
    adj = consensus(times, labels, own, T)
    assert adj[2] > T > own[2]  # lifted over the threshold by four confident neighbours
    assert decided_by_sequence(own, adj, T).tolist() == [False, False, True, False, False]
    assert np.all(adj >= own - 1e-6)  # agreement never lowers


def test_off_changes_nothing_and_lone_or_distant_photos_are_untouched():
    times = parse_times(_burst("2024-05-01T10:00:00", 3, 60) + ["2024-05-01T15:00:00", None])
    labels = ["taj", "taj", "taj", "taj", "taj"]
    own = np.array([0.9, 0.9, 0.45, 0.45, 0.45])
    adj = consensus(times, labels, own, T)
    assert adj[3] == pytest.approx(0.45) and adj[4] == pytest.approx(0.45)  # hours away / no time
    # zero lift and lower == consensus off
    off = consensus(times, labels, own, T, config=SequenceConfig(lift=0.0, lower=0.0))
    assert np.allclose(off, own)


def test_disagreeing_neighbours_lower_and_gps_separates_places():
    times = parse_times(_burst("2024-05-01T10:00:00", 4, 30))
    labels = ["fort", "fort", "fort", "gate"]
    own = np.array([0.9, 0.92, 0.88, 0.55])
    lowering = SequenceConfig(lower=0.15)
    assert consensus(times, labels, own, T)[3] < own[3]  # the default lowers too (by at most 0.1)
    adj = consensus(times, labels, own, T, config=lowering)
    assert adj[3] < T < own[3]
    assert decided_by_sequence(own, adj, T)[3]
    # the same photos, but the odd one was taken 30 km away: its neighbours are not neighbours
    lat = np.array([27.17, 27.17, 27.17, 27.45])
    lon = np.array([78.04, 78.04, 78.04, 78.04])
    adj_gps = consensus(times, labels, own, T, lat=lat, lon=lon, config=lowering)
    assert adj_gps[3] == pytest.approx(own[3])


def test_only_confident_neighbours_vote():
    times = parse_times(_burst("2024-05-01T10:00:00", 4, 30))
    labels = ["a", "a", "a", "a"]
    own = np.array([0.4, 0.45, 0.3, 0.2])  # nobody is confident: nothing changes
    assert consensus(times, labels, own, T)[3] == pytest.approx(own[3])  # the default only lifts


# --- consensus inside retag, on real scanned photos -------------------------------------------------------------


def test_retag_with_consensus_on_and_off(tmp_path):
    """Same catalog, same features: off keeps confidence == own confidence; on adjusts only photos with confident
    neighbours in time, keeps the own confidence, and says 'sequence' exactly where it changed the tag."""
    import os

    from conftest import copy_landmark_day

    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.catalog import open_catalog
    from landmark_tagger.errors import BundleError
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.retag import redecide
    from landmark_tagger.scan import scan

    try:
        bundle = load_bundle(os.environ.get("LTAG_TEST_BUNDLE") or None)
    except BundleError as e:
        pytest.skip(f"model bundle not installed: {e}")
    folder = tmp_path / "day"
    srcs = copy_landmark_day(folder, ("taj_mahal", "hawa_mahal"), 6)
    with open_catalog(tmp_path / "catalog.db") as cat:
        scan([str(folder)], catalog=cat, bundle=bundle, recognizer=Recognizer(bundle), workers=1, write=False)
        # two bursts, one per landmark, minutes apart; then a photo with no capture time
        for i in range(len(srcs)):
            t = f"2024-05-01T{10 + i // 6}:{(i % 6) * 2:02d}:00" if i < len(srcs) - 1 else None
            cat.conn.execute("UPDATE photos SET taken_at = ? WHERE name = ?", (t, f"IMG_{i:02d}.jpg"))
        last = cat.photo_by_path(str(folder / f"IMG_{len(srcs) - 1:02d}.jpg"))["id"]
        rec = Recognizer(bundle)
        off = redecide(cat, rec, sequence=False)
        on = redecide(cat, rec, sequence=True)
    assert set(off) == set(on) and len(off) == len(srcs)
    thr = bundle.threshold
    assert all(d.confidence == d.own_confidence for d in off.values())
    for pid, d in on.items():
        assert d.own_confidence == pytest.approx(off[pid].confidence, abs=1e-6)  # own confidence is kept
        flipped = (d.label is not None) != (off[pid].label is not None)
        assert (d.source == "sequence") == flipped
        assert (d.label is not None) == (d.confidence >= thr)
    # the untimed photo has no neighbours: unchanged
    assert on[last].confidence == pytest.approx(off[last].confidence, abs=1e-6)
    assert any(abs(d.confidence - d.own_confidence) > 1e-6 for d in on.values())  # consensus did something
