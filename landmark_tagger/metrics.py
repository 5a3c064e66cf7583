"""Recognition metrics (pure numpy; shared by ``training/evaluate`` and the benchmarks).

- :func:`gap`: Global Average Precision (micro-AP) as in the Google Landmark Recognition challenges.
- :func:`precision_coverage`: precision of what is tagged and share of photos tagged at a threshold.
- :func:`wilson`: Wilson score interval of a binomial proportion.
- :func:`threshold_for_precision`: the lowest threshold whose tagged set reaches a precision target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% (z = 1.96) Wilson score interval for ``successes / total``; (0, 1) when ``total`` is 0."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def gap(pred: np.ndarray, conf: np.ndarray, true: np.ndarray) -> float:
    """Global Average Precision (GLRC micro-AP).

    Args:
        pred: (N,) predicted label ids, one prediction per query (-1 = no prediction).
        conf: (N,) confidence of each prediction.
        true: (N,) true label ids; -1 for a query that shows no known landmark.

    Returns:
        ``1/M * sum_i P(i) * rel(i)`` over predictions sorted by decreasing confidence, where ``M`` is the number
        of queries with a known landmark, ``P(i)`` the precision of the top ``i`` predictions and ``rel(i)`` 1 if
        prediction ``i`` is correct. Predictions for non-landmark queries are always wrong; queries without a
        prediction contribute nothing.
    """
    pred, conf, true = np.asarray(pred), np.asarray(conf, dtype=np.float64), np.asarray(true)
    m = int(np.sum(true >= 0))
    if m == 0:
        return 0.0
    made = pred >= 0
    order = np.argsort(-conf[made], kind="stable")
    rel = (pred[made] == true[made])[order] & (true[made][order] >= 0)
    prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float(np.sum(prec * rel) / m)


@dataclass(frozen=True)
class PrecisionCoverage:
    """What a threshold does on a set of queries (counts plus Wilson 95% intervals)."""

    threshold: float
    n: int              # queries
    tagged: int         # queries with confidence >= threshold
    correct: int        # tagged and correct
    precision: float
    precision_ci: tuple[float, float]
    coverage: float     # tagged / n
    coverage_ci: tuple[float, float]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "n": self.n, "tagged": self.tagged, "correct": self.correct,
                "precision": self.precision, "precision_ci": list(self.precision_ci),
                "coverage": self.coverage, "coverage_ci": list(self.coverage_ci)}


def precision_coverage(conf: np.ndarray, correct: np.ndarray, threshold: float) -> PrecisionCoverage:
    """Precision and coverage of tagging every query with ``conf >= threshold``."""
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=bool)
    tagged = conf >= threshold
    t, c, n = int(tagged.sum()), int((tagged & correct).sum()), len(conf)
    return PrecisionCoverage(threshold, n, t, c, c / t if t else 1.0, wilson(c, t), t / n if n else 0.0, wilson(t, n))


def threshold_for_precision(conf: np.ndarray, correct: np.ndarray, target: float = 0.99) -> float:
    """The lowest threshold (one of the ``conf`` values) whose tagged set has precision >= ``target``.

    Returns ``inf`` when no threshold reaches the target (nothing should be tagged).
    """
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=bool)
    if len(conf) == 0:
        return math.inf
    order = np.argsort(-conf, kind="stable")
    c_sorted, ok = conf[order], correct[order]
    prec = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    # a threshold can only sit at the last of a run of tied confidences
    last_of_tie = np.r_[c_sorted[1:] != c_sorted[:-1], True]
    good = np.nonzero((prec >= target) & last_of_tie)[0]
    if len(good) == 0:
        return math.inf
    return float(c_sorted[good[-1]])
