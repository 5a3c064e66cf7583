"""GAP, Wilson intervals, precision/coverage and threshold selection against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from landmark_tagger.metrics import gap, precision_coverage, threshold_for_precision, wilson


def test_gap_hand_computed():
    # 5 queries; query 4 shows no known landmark (true -1); query 3 gets no prediction.
    pred = np.array([1, 2, 0, -1, 2])
    conf = np.array([0.9, 0.8, 0.7, 0.0, 0.95])
    true = np.array([1, 0, 0, 2, -1])
    # sorted by confidence: q4 (wrong: non-landmark), q0 (right), q1 (wrong), q2 (right)
    # P(1)=0, P(2)=1/2, P(3)=1/3, P(4)=2/4; rel = 0,1,0,1; M = 4 queries with a landmark
    expected = (1 / 2 + 2 / 4) / 4
    assert gap(pred, conf, true) == pytest.approx(expected)


def test_gap_perfect_and_empty():
    assert gap(np.array([0, 1]), np.array([0.5, 0.6]), np.array([0, 1])) == pytest.approx(1.0)
    assert gap(np.array([0]), np.array([0.5]), np.array([-1])) == 0.0


def test_wilson_reference_values():
    # Wilson 95% interval for 0/10 is [0, 0.2775]; for 99/100: [0.9455, 0.9982] (standard tables)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(99, 100)
    assert lo == pytest.approx(0.9455, abs=1e-4) and hi == pytest.approx(0.9982, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_precision_coverage_counts():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    correct = np.array([True, True, False, True, False])
    pc = precision_coverage(conf, correct, 0.65)
    assert (pc.n, pc.tagged, pc.correct) == (5, 3, 2)
    assert pc.precision == pytest.approx(2 / 3) and pc.coverage == pytest.approx(3 / 5)
    assert pc.precision_ci == wilson(2, 3)
    none = precision_coverage(conf, correct, 0.95)
    assert none.tagged == 0 and none.precision == 1.0


def test_threshold_for_precision():
    conf = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, True])
    # precision of the top-i: 1, 1, 1, 3/4, 4/5, 5/6 -> the lowest threshold with precision 1 is 0.85
    assert threshold_for_precision(conf, correct, 0.99) == pytest.approx(0.85)
    assert threshold_for_precision(conf, correct, 0.8) == pytest.approx(0.6)   # 5/6 >= 0.8
    assert threshold_for_precision(conf, correct, 0.84) == pytest.approx(0.85)  # 4/5 and 5/6 fall short
    assert math.isinf(threshold_for_precision(conf, np.zeros(6, bool), 0.5))


def test_threshold_never_splits_ties():
    conf = np.array([0.9, 0.8, 0.8])
    correct = np.array([True, True, False])
    # a threshold at 0.8 tags both tied photos (precision 2/3), so only 0.9 reaches 99%
    assert threshold_for_precision(conf, correct, 0.99) == pytest.approx(0.9)
