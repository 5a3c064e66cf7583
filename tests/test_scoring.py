"""The scoring rules, label exclusion (open-set stand-in) and the confidence calibration."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_tagger.scoring import (
    RULES,
    Calibration,
    ScoringRule,
    decide,
    exclude_labels,
    fit_calibration,
    label_scores,
)

SIMS = np.array([[0.95, 0.90, 0.60, 0.50],
                 [0.97, 0.70, 0.69, 0.40],
                 [0.80, -1.0, -1.0, -1.0]])
LABS = np.array([[2, 2, 1, 0],
                 [1, 0, 0, 2],
                 [3, -1, -1, -1]])


def test_top1():
    lab, raw = label_scores(SIMS, LABS, "top1")
    assert lab.tolist() == [2, 1, 3] and raw.tolist() == pytest.approx([0.95, 0.97, 0.80])


def test_best2_penalises_a_lonely_neighbour():
    lab, raw = label_scores(SIMS, LABS, "best2")
    # row 0: label 2 -> (0.95 + 0.90) / 2; row 1: label 1 has one hit -> (0.97 + floor 0.40) / 2 = 0.685 and
    # label 0 -> (0.70 + 0.69) / 2 = 0.695 wins; row 2: one valid hit, floor = itself
    assert lab.tolist() == [2, 0, 3]
    assert raw.tolist() == pytest.approx([0.925, 0.695, 0.80])


def test_margin_and_best2m():
    _, margin = label_scores(SIMS, LABS, "margin")
    _, b2m = label_scores(SIMS, LABS, "best2m")
    # row 0: winner 0.925, runner-up label 1 -> (0.60 + 0.50) / 2 = 0.55
    assert margin[0] == pytest.approx(0.925 - 0.55)
    assert b2m[0] == pytest.approx(0.925 + 0.5 * (0.925 - 0.55))


def test_vote_share():
    lab, raw = label_scores(SIMS, LABS, "vote")
    w = np.maximum(SIMS[0], 0) ** 3
    assert lab[0] == 2 and raw[0] == pytest.approx((w[0] + w[1]) / w.sum())
    assert raw[2] == pytest.approx(1.0)


def test_no_references():
    lab, raw = label_scores(np.full((1, 3), -1.0), np.full((1, 3), -1), "best2")
    assert lab.tolist() == [-1] and np.isneginf(raw[0])
    with pytest.raises(ValueError, match="unknown scoring rule"):
        label_scores(SIMS, LABS, "nope")


def test_exclude_labels_is_the_open_set_stand_in():
    s, lab = exclude_labels(SIMS, LABS, np.array([2, 0, 3]), 3)
    assert lab.tolist() == [[1, 0, -1], [1, 2, -1], [-1, -1, -1]]
    assert s[0].tolist() == pytest.approx([0.60, 0.50, -1.0])


def test_calibration_map_and_inverse():
    cal = Calibration((0.4, 0.8, 0.95), (0.0, 0.5, 1.0))
    assert cal.confidence(np.array([0.2, 0.4, 0.6, 0.8, 0.9, 1.0])).tolist() == pytest.approx(
        [0.0, 0.0, 0.25, 0.5, 0.5 + 0.5 * (0.1 / 0.15), 1.0])
    assert cal.raw_for(0.5) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        Calibration((0.5, 0.4), (0.0, 1.0))
    rt = Calibration.from_dict(cal.to_dict())
    assert rt == cal


def test_fit_calibration_puts_threshold_at_half():
    cal = fit_calibration(0.8, np.array([0.3, 0.5, 0.6]), np.array([0.85, 0.9, 0.99]))
    assert cal.confidence(np.array([0.8]))[0] == pytest.approx(0.5)
    assert cal.confidence(np.array([0.5]))[0] == 0.0


@pytest.mark.parametrize("rule", RULES)
def test_decide_respects_threshold(rule):
    _, raw = label_scores(SIMS, LABS, rule)
    t = float(np.sort(raw)[1])  # accept exactly the two best-scoring rows
    lo, hi = float(raw.min()) - 1.0, float(raw.max()) + 1.0
    sr = ScoringRule(rule, 4, Calibration((lo, t, hi), (0.0, 0.5, 1.0)), 0.5)
    label, conf, accepted = decide(SIMS, LABS, sr)
    assert accepted.sum() == 2 and (label[~accepted] == -1).all()
    assert conf[accepted].min() == pytest.approx(0.5)


def test_scoring_rule_validation():
    cal = Calibration((0.0, 1.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="outside"):
        ScoringRule("top1", 5, cal, 1.2)
    with pytest.raises(ValueError, match="unknown"):
        ScoringRule("x", 5, cal, 0.5)
