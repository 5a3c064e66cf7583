"""Re-measure a bundle's model-card figures through the runtime path only (no torch).

Rebuilds the deterministic near-duplicate-aware split of ``../shared/data/landmarks`` (training/data.py, numpy +
PIL only), decodes the report-split photos with ``landmark_tagger.decode`` (as ``ltag scan`` does), embeds them
with the bundle's Recognizer and prints: top-1, GAP, precision and coverage at the bundle's threshold (Wilson 95%
intervals), the open-set stand-in (each photo scored without its own landmark's site in the gallery) and, for labels the
bundle does not know, the share of their photos left untagged.

    python benchmarks/model_eval.py [--model DIR] [--data ../shared/data/landmarks] [--split report]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "landmarks")
    ap.add_argument("--split", default="report", choices=["calib", "report"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.metrics import gap, precision_coverage, wilson
    from landmark_tagger.preprocess import min_decode_side, prepare
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.scoring import exclude_labels, label_scores, sites_from_coordinates
    from training.data import scan_dataset, split_samples

    try:
        from landmark_tagger.decode import decode_for_model
    except ImportError:  # pragma: no cover
        from training.data import load_rgb

        def decode_for_model(path, min_side):  # noqa: ARG001
            return load_rgb(path)

    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    bundle = load_bundle(args.model)
    rec = Recognizer(bundle, threads=args.threads)
    samples = scan_dataset(args.data)
    split = split_samples(samples, cache=ROOT / "runs" / "phash-cache.json")
    known = set(bundle.label_ids)
    idx = {lab: i for i, lab in enumerate(bundle.label_ids)}
    queries = [s for s in samples if split[s.key] == args.split and s.label in known]
    unknown = [s for s in samples if s.label not in known]
    side = min_decode_side(bundle.preprocess)

    def embed(items):
        embs = []
        for start in range(0, len(items), 16):
            arrays = [prepare(decode_for_model(s.path, side), bundle.preprocess) for s in items[start:start + 16]]
            embs.append(rec.embed(arrays)[0])
        return np.concatenate(embs) if embs else np.zeros((0, bundle.embedding_dim), np.float32)

    t0 = time.time()
    emb = embed(queries)
    true = np.array([idx[s.label] for s in queries])
    dec = rec.decide_bundle(emb)
    sims, labs = rec.neighbours(emb, k=200)
    pred, _ = label_scores(sims[:, :bundle.scoring.k], labs[:, :bundle.scoring.k], bundle.scoring.rule)
    conf = np.array([d.confidence for d in dec])
    correct = pred == true
    n = len(queries)
    pc = precision_coverage(conf, correct, bundle.threshold - 1e-9)
    site = sites_from_coordinates([lab.lat for lab in bundle.labels], [lab.lon for lab in bundle.labels], 0.3)
    so, lo = exclude_labels(sims, labs, true, bundle.scoring.k, site)
    _, raw_o = label_scores(so, lo, bundle.scoring.rule)
    conf_o = bundle.scoring.calibration.confidence(np.where(np.isfinite(raw_o), raw_o, -1e9))
    open_untagged = int((conf_o < bundle.threshold - 1e-9).sum())

    def ci(k, m):
        a, b = wilson(k, m)
        return f"{k / m:.1%} [{a:.1%}, {b:.1%}]" if m else "n/a"

    print(f"bundle {bundle.model_id}, {args.split} split: {n} photos of {len(known)} known landmarks "
          f"({time.time() - t0:.0f} s through the runtime)")
    print(f"top-1 {ci(int(correct.sum()), n)}   GAP {gap(pred, conf, true):.3f}")
    print(f"threshold {bundle.threshold}: precision {ci(pc.correct, pc.tagged)}, tagged {ci(pc.tagged, n)}")
    print(f"open-set stand-in (own landmark's site removed from the gallery): untagged {ci(open_untagged, n)}")
    if unknown:
        dec_u = rec.decide_bundle(embed(unknown))
        un = sum(d.label is None for d in dec_u)
        labels = sorted({s.label for s in unknown})
        print(f"photos of {len(labels)} landmarks the bundle does not know ({', '.join(labels)}): "
              f"untagged {ci(un, len(unknown))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
