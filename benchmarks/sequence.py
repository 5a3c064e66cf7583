"""Sequence consensus: does it help? Precision and coverage with and without it on an archive-like set.

Builds photo archives from ``../shared/data/landmarks`` with realistic capture times: days with visits to 2-4
landmarks, each visit 1-3 bursts of 3-10 photos seconds to a minute apart, bursts minutes apart, landmarks hours
apart; some visits are to landmarks the model does not know (held-out labels: every photo of them should stay
untagged), and single photos of unknown landmarks are mixed into bursts; half the days have GPS (landmark
position + ~150 m noise). Photos come only from the bundle's held-out splits (never its gallery / training
photos) and from its held-out labels.

Each photo is decided once from its own pixels by the bundle (``Recognizer.embed`` + ``decide``, features cached
in ``runs/bench-cache/``); the archive then only orders the photos in time. Consensus parameters are chosen on
``--tune-seeds`` archives and reported on separate ``--seeds`` archives.

Usage: nice -n 10 python benchmarks/sequence.py [--model runs/holdout5/bundle] [--seeds 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _landmarks import PhotoSet, bundle_features, find_bundle, load_photo_set  # noqa: E402

from landmark_tagger.sequence import SequenceConfig, consensus  # noqa: E402

APPROX_LABELS = ["charminar", "golden_temple", "india_gate", "lotus_temple", "victoria_memorial"]


@dataclass
class Archive:
    idx: np.ndarray  # photo indices into the photo set
    times: np.ndarray  # seconds
    lat: np.ndarray
    lon: np.ndarray


def build_archive(ps: PhotoSet, rng: np.random.Generator, *, days: int = 12, stray_unknown: float = 0.08,
                  unknown_visit: float = 0.2) -> Archive:
    """One archive: photos of known landmarks in bursts, visits to unknown landmarks, strays mixed in."""
    known = {lab: list(rng.permutation(ix)) for lab, ix in ps.known_by_label().items()}
    unknown = {lab: list(rng.permutation(ix)) for lab, ix in ps.unknown_by_label().items()}
    pos = {lab: (rng.uniform(8, 34), rng.uniform(68, 92)) for lab in [*known, *unknown]}
    stray_pool = list(rng.permutation([i for ix in unknown.values() for i in ix]))
    idx, times, lat, lon = [], [], [], []
    t = datetime(2023, 1, 1, 8, 0).timestamp()
    for _day in range(days):
        gps = rng.random() < 0.5
        t += 86400 - (t % 86400) + 8 * 3600 + rng.uniform(0, 2 * 3600)
        for _visit in range(int(rng.integers(2, 5))):
            is_unknown = rng.random() < unknown_visit and any(unknown.values())
            pool = unknown if is_unknown else known
            labs = [lab for lab, ix in pool.items() if len(ix) >= 3]
            if not labs:
                continue
            lab = labs[int(rng.integers(len(labs)))]
            lat0, lon0 = pos[lab]
            for _burst in range(int(rng.integers(1, 4))):
                for _ in range(int(rng.integers(3, 11))):
                    src = pool[lab]
                    if not src:
                        break
                    if not is_unknown and stray_pool and rng.random() < stray_unknown:
                        i = stray_pool.pop()
                        if i in unknown.get(ps.labels[i], []):
                            unknown[ps.labels[i]].remove(i)
                    else:
                        i = src.pop()
                        if i in stray_pool:
                            stray_pool.remove(i)
                    idx.append(i)
                    times.append(t)
                    lat.append(lat0 + rng.normal(0, 0.0014) if gps else np.nan)
                    lon.append(lon0 + rng.normal(0, 0.0014) if gps else np.nan)
                    t += rng.uniform(5, 90)
                t += rng.uniform(2 * 60, 20 * 60)
            t += rng.uniform(1 * 3600, 3 * 3600)
    return Archive(np.array(idx), np.array(times), np.array(lat), np.array(lon))


def evaluate(ps: PhotoSet, arc: Archive, threshold: float, cfg: SequenceConfig | None) -> dict[str, float]:
    """Precision of what is tagged, coverage of known-landmark photos, unknown photos left untagged."""
    cand = [ps.cand[i] for i in arc.idx]
    own = ps.conf[arc.idx]
    conf = own if cfg is None else consensus(arc.times, cand, own, threshold, lat=arc.lat, lon=arc.lon, config=cfg)
    tagged = (conf >= threshold) & np.array([c is not None for c in cand])
    truth = [ps.labels[i] if ps.is_known[i] else None for i in arc.idx]
    correct = np.array([c == t for c, t in zip(cand, truth, strict=True)])
    known = np.array([t is not None for t in truth])
    return {"tagged": int(tagged.sum()), "correct": int((tagged & correct).sum()), "known": int(known.sum()),
            "unknown": int((~known).sum()), "unknown_tagged": int((tagged & ~known).sum()), "n": len(arc.idx)}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    tot = {k: sum(r[k] for r in rows) for k in rows[0]}
    return {"precision": tot["correct"] / max(tot["tagged"], 1), "coverage": tot["correct"] / max(tot["known"], 1),
            "unknown_untagged": 1 - tot["unknown_tagged"] / max(tot["unknown"], 1), "photos": tot["n"],
            "tagged": tot["tagged"], "errors": tot["tagged"] - tot["correct"]}


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (c - h) / d, (c + h) / d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle folder (default: runs/holdout5 bundle, else the shipped one)")
    ap.add_argument("--seeds", type=int, default=20, help="archives to report on")
    ap.add_argument("--tune-seeds", type=int, default=10, help="archives to choose parameters on (other seeds)")
    ap.add_argument("--approx", action="store_true",
                    help="no holdout bundle: treat 5 labels as unknown by dropping them from the shipped gallery")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    approx = args.approx or (args.model is None and find_bundle(None) is None)
    ps = load_photo_set(args.model, exclude_labels=APPROX_LABELS if approx else None)
    bundle_features(ps)
    thr = ps.threshold
    tune = [build_archive(ps, np.random.default_rng(1000 + s)) for s in range(args.tune_seeds)]
    test = [build_archive(ps, np.random.default_rng(s)) for s in range(args.seeds)]
    base = SequenceConfig()
    grid = [replace(base, lift=lift, lower=lower, window_s=w, tau_s=tau)
            for lift, lower, w, tau in itertools.product((0.05, 0.1, 0.15, 0.25), (0.0, 0.1, 0.2, 0.3),
                                                         (300, 900), (120, 300))]

    def score(cfg: SequenceConfig | None, arcs: list[Archive]) -> dict[str, float]:
        return summarise([evaluate(ps, a, thr, cfg) for a in arcs])

    off_tune = score(None, tune)
    best, best_s = None, None
    for cfg in grid:
        s = score(cfg, tune)
        # keep precision at least as good as without consensus; then the most coverage
        if s["precision"] + 1e-9 < off_tune["precision"]:
            continue
        if best_s is None or s["coverage"] > best_s["coverage"]:
            best, best_s = cfg, s
    off = score(None, test)
    default = score(base, test)
    res = {"model": ps.model_id, "approximation": approx, "threshold": thr, "photos_pool": len(ps.labels), "holdout_labels": ps.holdout,
           "archives": args.seeds, "off": off, "default_config": {"config": base.__dict__, **default}}
    if best is not None:
        res["tuned"] = {"config": best.__dict__, **score(best, test)}
    if args.json:
        print(json.dumps(res, indent=1))
        return
    tag = " (APPROXIMATION: unknown labels dropped from the gallery of a bundle trained on them)" if approx else ""
    print(f"model {ps.model_id}{tag}\nthreshold {thr:.3f}  photo pool {len(ps.labels)}  unknown labels {ps.holdout}")
    print(f"{args.seeds} archives, {off['photos']} photos in all (tuned on {args.tune_seeds} other archives)\n")
    print(f"{'':28s} {'precision':>18s} {'coverage':>18s} {'unknown untagged':>17s} {'errors':>7s}")
    rows = [("consensus off", off), ("consensus on (default)", default)]
    if best is not None:
        rows.append(("consensus on (tuned)", res["tuned"]))
    for name, s in rows:
        lo, hi = wilson(s["tagged"] - s["errors"], s["tagged"])
        print(f"{name:28s} {s['precision']:7.3f} [{lo:.3f},{hi:.3f}] {s['coverage']:18.3f} "
              f"{s['unknown_untagged']:17.3f} {s['errors']:7d}")
    if best is not None:
        print(f"\ntuned: {best}")


if __name__ == "__main__":
    main()
