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
    adj = consensus(times, labels, own, T)
    assert adj[3] < T < own[3]
    assert decided_by_sequence(own, adj, T)[3]
    # the same photos, but the odd one was taken 30 km away: its neighbours are not neighbours
    lat = np.array([27.17, 27.17, 27.17, 27.45])
    lon = np.array([78.04, 78.04, 78.04, 78.04])
    adj_gps = consensus(times, labels, own, T, lat=lat, lon=lon)
    assert adj_gps[3] == pytest.approx(own[3])


def test_only_confident_neighbours_vote():
    times = parse_times(_burst("2024-05-01T10:00:00", 4, 30))
    labels = ["a", "a", "a", "a"]
    own = np.array([0.4, 0.45, 0.3, 0.2])  # nobody is confident: nothing changes
    assert np.allclose(consensus(times, labels, own, T), own)
