"""Evaluation and calibration with the runtime's own code (preprocess, onnxruntime, faiss, scoring, metrics).

Protocol (docs/training.md):
1. Embed every photo through the exported ONNX model exactly as ``ltag`` does (``landmark_tagger.preprocess``
   with the bundle's test-time views; onnxruntime; view average).
2. Gallery = training-split photos, cleaned of label noise (:func:`clean_gallery`).
3. Calibration split: each photo is scored twice, against the full gallery (a known landmark) and against the
   gallery without its own landmark (an open-set stand-in that must come out unknown). For each scoring rule
   the raw threshold is the lowest one whose tagged set over both has >= 99% precision; the rule that tags
   the most known photos at that threshold wins.
4. Report split (no part in training, cleaning or calibration): top-1, GAP, precision and coverage at the
   threshold with Wilson 95% intervals, the open-set stand-in, and photos of held-out classes (if the run
   left any out) that must stay untagged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from landmark_tagger.metrics import gap, precision_coverage, threshold_for_precision, wilson
from landmark_tagger.preprocess import Preprocess, prepare
from landmark_tagger.scoring import RULES, Calibration, ScoringRule, exclude_labels, fit_calibration, label_scores
from training.data import Sample, group_near_duplicates, load_rgb

log = logging.getLogger(__name__)

TARGET_PRECISION = 0.99
THRESHOLD_CONF = 0.5
SEARCH_K = 10          # neighbours the rules look at
SITE_KM = 0.3          # landmarks closer than this share a site (removed together in the open-set stand-in)
SEARCH_K_WIDE = 200    # neighbours fetched so that one label can be removed (open-set stand-in)


# ---------------------------------------------------------------------------------------------- embedding
def embed_samples(onnx_path: Path, samples: list[Sample], spec: Preprocess, threads: int | None = None,
                  cache: Path | None = None, decode_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embed photos with onnxruntime exactly as the runtime does: ``(emb (N, D), generic (N, G))``.

    With ``cache`` (an .npz path), results are stored under a key of the model file, the preprocessing and the
    photo list, and reused.
    """
    import onnxruntime as ort

    from landmark_tagger.preprocess import min_decode_side
    from landmark_tagger.recognizer import l2_normalize

    key = hashlib.sha1(Path(onnx_path).read_bytes()).hexdigest() + json.dumps(spec.to_dict(), sort_keys=True)
    key = hashlib.sha1((key + "|".join(s.key for s in samples)).encode()).hexdigest()
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return z["emb"], z["gen"]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    side = decode_side or min_decode_side(spec)
    embs, gens, batch, counts = [], [], [], []
    t0 = time.time()

    def flush() -> None:
        if not batch:
            return
        e, g = sess.run(["embeddings", "generic"], {"images": np.concatenate(batch)})
        bounds = np.cumsum([0] + counts)
        embs.extend(e[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        gens.extend(g[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        batch.clear()
        counts.clear()

    for i, s in enumerate(samples):
        img = load_rgb(s.path)
        if min(img.size) > 2 * side:  # the runtime decoder delivers about this much (JPEG draft)
            img.thumbnail((img.size[0] * 2 * side // min(img.size), img.size[1] * 2 * side // min(img.size)))
        a = prepare(img, spec)
        batch.append(a)
        counts.append(a.shape[0])
        if sum(counts) >= 48:
            flush()
        if (i + 1) % 250 == 0:
            log.info("embedded %d/%d photos (%.1f photos/s)", i + 1, len(samples), (i + 1) / (time.time() - t0))
    flush()
    emb, gen = l2_normalize(np.stack(embs)), l2_normalize(np.stack(gens))
    if cache is not None:
        np.savez(cache, key=key, emb=emb, gen=gen)
    return emb, gen


# ---------------------------------------------------------------------------------------------- gallery
def _search(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, gallery.shape[0]))


def clean_gallery(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray, votes: int = 3) -> np.ndarray:
    """Boolean mask of gallery photos to keep.

    A photo is dropped when its ``votes`` nearest neighbours from *other* near-duplicate groups all carry another
    label and the closest of them is closer than any photo of its own label: it looks more like another
    landmark than like its own (a mis-filed photo, or a view shared by two landmarks).
    """
    sims, idx = _search(emb, emb, min(len(emb), 64))
    keep = np.ones(len(emb), dtype=bool)
    for i in range(len(emb)):
        other_group = groups[idx[i]] != groups[i]
        s, lab = sims[i][other_group], labels[idx[i][other_group]]
        if len(lab) < votes:
            continue
        same = s[lab == labels[i]]
        best_same = same[0] if len(same) else -1.0
        if np.all(lab[:votes] != labels[i]) and s[0] > best_same:
            keep[i] = False
    return keep


def query_scores(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, true: np.ndarray,
                 rule: str, k: int = SEARCH_K, site: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Known and open-set (own label, or with ``site`` its whole site, removed) scores: pred/raw for both."""
    sims, idx = _search(gallery, queries, SEARCH_K_WIDE)
    labs = np.where(idx >= 0, gallery_labels[np.clip(idx, 0, None)], -1)
    pred, raw = label_scores(sims[:, :k], labs[:, :k], rule)
    s_open, l_open = exclude_labels(sims, labs, true, k, site)
    pred_o, raw_o = label_scores(s_open, l_open, rule)
    return {"pred": pred, "raw": raw, "pred_open": pred_o, "raw_open": raw_o}


def calibrate(sc: dict[str, np.ndarray], true: np.ndarray, target: float = TARGET_PRECISION) -> float:
    """Lowest raw threshold with >= ``target`` precision over known queries + their open-set stand-ins."""
    raw = np.r_[sc["raw"], sc["raw_open"]]
    correct = np.r_[sc["pred"] == true, np.zeros(len(true), dtype=bool)]
    return threshold_for_precision(raw, correct, target)


def _ci(pc) -> str:
    return f"{pc.precision:.1%} [{pc.precision_ci[0]:.1%}, {pc.precision_ci[1]:.1%}]"


def evaluate_embeddings(emb: np.ndarray, split: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                        holdout: np.ndarray, rules: tuple[str, ...] = RULES, rule: str | None = None,
                        clean: bool = True, target: float = TARGET_PRECISION, site: np.ndarray | None = None,
                        unknown_raw: dict[str, np.ndarray] | None = None, unknown_untagged: float = 0.97) -> dict:
    """Full protocol on precomputed embeddings.

    Args:
        emb: (N, D) embeddings of all photos.
        split: (N,) 'train' / 'calib' / 'report'.
        labels: (N,) class index (of the training classes; held-out photos may carry any value).
        groups: (N,) near-duplicate group id.
        holdout: (N,) True for photos of classes left out of training.
        rules: rules to compare; ``rule`` forces one.
        site: (C,) site id per class for the open-set stand-in (:func:`landmark_tagger.scoring.exclude_labels`).
        unknown_raw: per rule, raw scores of photos of landmarks a model of the same recipe was *not* trained on
            (:func:`heldout_raw_scores`); the threshold is raised, if needed, so that at most
            ``1 - unknown_untagged`` of them would be tagged.

    Returns:
        A report dict (JSON-serialisable) with the chosen ScoringRule under ``"scoring"`` and the gallery mask.
    """
    tr = (split == "train") & ~holdout
    ca = (split == "calib") & ~holdout
    rp = (split == "report") & ~holdout
    keep = clean_gallery(emb[tr], labels[tr], groups[tr]) if clean else np.ones(int(tr.sum()), bool)
    g_emb, g_lab = emb[tr][keep], labels[tr][keep]
    report: dict = {"gallery": {"photos": int(tr.sum()), "kept": int(keep.sum()), "dropped": int((~keep).sum())},
                    "rules": {}, "target_precision": target}
    best = None
    for r in ([rule] if rule else list(rules)):
        sc = query_scores(g_emb, g_lab, emb[ca], labels[ca], r, site=site)
        t_known = t = calibrate(sc, labels[ca], target)
        t_unknown = None
        if unknown_raw is not None and len(unknown_raw[r]):
            t_unknown = float(np.quantile(unknown_raw[r], unknown_untagged, method="higher"))
            t = max(t, t_unknown + 1e-6)
        known = precision_coverage(sc["raw"], sc["pred"] == labels[ca], t)
        rs = query_scores(g_emb, g_lab, emb[rp], labels[rp], r, site=site)
        rep = precision_coverage(rs["raw"], rs["pred"] == labels[rp], t)
        report["rules"][r] = {"raw_threshold": t, "raw_threshold_known": t_known, "raw_threshold_unknown": t_unknown,
                              "calib_coverage": known.coverage, "calib_precision": known.precision,
                              "report_coverage": rep.coverage, "report_precision": rep.precision}
        log.info("rule %-7s threshold %.4f calib coverage %.1f%% (precision %.1f%%) | report coverage %.1f%% "
                 "precision %.1f%%", r, t, 100 * known.coverage, 100 * known.precision, 100 * rep.coverage,
                 100 * rep.precision)
        if best is None or known.coverage > best[1]:
            best = (r, known.coverage, t, sc)
    r, _, t, sc = best
    if not np.isfinite(t):  # nothing reaches the target: a bundle that tags nothing is the honest answer
        t = float(np.max(np.r_[sc["raw"], sc["raw_open"]][np.isfinite(np.r_[sc["raw"], sc["raw_open"]])],
                         initial=0.0)) + 1e-3
        report["target_reached"] = False
        log.warning("no threshold reaches %.1f%% precision on the calibration split; the bundle will tag nothing",
                    100 * target)
    else:
        report["target_reached"] = True
    calib = fit_calibration(t, sc["raw_open"], sc["raw"][sc["pred"] == labels[ca]], THRESHOLD_CONF)
    scoring = ScoringRule(r, SEARCH_K, calib, THRESHOLD_CONF)
    report.update(_report_split(g_emb, g_lab, emb, labels, rp, holdout, scoring, site, split))
    if unknown_raw is not None:
        report["unknown_calibration"] = {"untagged_target": unknown_untagged, "photos": int(len(unknown_raw[r])),
                                         "raw_threshold_unknown": report["rules"][r]["raw_threshold_unknown"]}
    report["scoring"] = scoring.to_dict()
    report["gallery_keep"] = keep
    return report


def _conf(scoring: ScoringRule, raw: np.ndarray) -> np.ndarray:
    finite = np.isfinite(raw)
    return np.where(finite, scoring.calibration.confidence(np.where(finite, raw, 0.0)), 0.0)


def _report_split(g_emb, g_lab, emb, labels, rp, holdout, scoring: ScoringRule, site=None, split=None) -> dict:
    sc = query_scores(g_emb, g_lab, emb[rp], labels[rp], scoring.rule, scoring.k, site)
    true = labels[rp]
    conf, conf_o = _conf(scoring, sc["raw"]), _conf(scoring, sc["raw_open"])
    thr = scoring.threshold - 1e-9
    correct = sc["pred"] == true
    n = len(true)
    pc = precision_coverage(conf, correct, thr)
    open_tagged = int((conf_o >= thr).sum())
    out = {
        "report": {
            "n": n,
            "top1": float(correct.mean()), "top1_ci": list(wilson(int(correct.sum()), n)),
            "gap": gap(sc["pred"], conf, true),
            "at_threshold": pc.to_dict(),
            "open_set_stand_in": {"n": n, "untagged": n - open_tagged, "untagged_rate": (n - open_tagged) / n,
                                  "untagged_ci": list(wilson(n - open_tagged, n))},
        }
    }
    lines = [f"report split: {n} photos; top-1 {correct.mean():.1%} "
             f"[{wilson(int(correct.sum()), n)[0]:.1%}, {wilson(int(correct.sum()), n)[1]:.1%}], "
             f"GAP {out['report']['gap']:.3f}",
             f"at threshold {scoring.threshold} ({scoring.rule}): precision {_ci(pc)}, tagged {pc.coverage:.1%} "
             f"[{pc.coverage_ci[0]:.1%}, {pc.coverage_ci[1]:.1%}] ({pc.tagged}/{n})",
             f"open-set stand-in (own landmark's site removed): {n - open_tagged}/{n} left untagged "
             f"({(n - open_tagged) / n:.1%})"]
    for key, mask, what in (("holdout_classes", holdout & (split == "report"), "report split"),
                            ("holdout_classes_all", holdout, "all")):
        if not mask.any():
            continue
        hs, hi = _search(g_emb, emb[mask], scoring.k)
        hl = np.where(hi >= 0, g_lab[np.clip(hi, 0, None)], -1)
        _, hraw = label_scores(hs, hl, scoring.rule)
        hconf = _conf(scoring, hraw)
        nh = int(mask.sum())
        un = int((hconf < thr).sum())
        out["report"][key] = {"n": nh, "untagged": un, "untagged_rate": un / nh, "untagged_ci": list(wilson(un, nh))}
        lo, hi_ = wilson(un, nh)
        lines.append(f"photos of landmarks left out of training ({what}): {un}/{nh} left untagged ({un / nh:.1%} "
                     f"[{lo:.1%}, {hi_:.1%}])")
    out["summary"] = "\n".join(lines)
    return out


# ---------------------------------------------------------------------------------------------- run level
def run_arrays(run: Path, data: Path, samples: list[Sample], split: dict[str, str], classes: list[str],
               holdout_labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """split, label index, group id and holdout mask arrays in ``samples`` order."""
    from training.data import perceptual_hashes

    cache_path = run / "phash.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    hashes = []
    for s in samples:
        ck = f"{s.key}|{s.path.stat().st_size}"
        hashes.append(tuple(cache[ck]) if ck in cache else perceptual_hashes(s.path))
    groups = np.array(group_near_duplicates(hashes))
    idx = {c: i for i, c in enumerate(classes)}
    labels = np.array([idx.get(s.label, -1) for s in samples])
    holdout = np.array([s.label in holdout_labels for s in samples])
    return np.array([split[s.key] for s in samples]), labels, groups, holdout


def evaluate_run(run: Path, data: Path, checkpoint: Path | None = None, views: tuple[str, ...] | None = None,
                 rule: str | None = None, open_set_from: Path | None = None, unknown_untagged: float = 0.97) -> dict:
    """Export the checkpoint to a float32 ONNX model in the run folder and run the protocol (writes no bundle)."""
    from training.export import export_onnx_from_checkpoint
    from training.train import load_checkpoint, prepare_data

    run = Path(run)
    cfg, meta, model = load_checkpoint(checkpoint or run / "checkpoints" / "last.pt")
    samples, split, classes = prepare_data(cfg, data, run)
    onnx_path = run / "eval_model.onnx"
    export_onnx_from_checkpoint(model.net, onnx_path, cfg.img_size)
    spec = Preprocess(cfg.img_size, tuple(meta["mean"]), tuple(meta["std"]), views=tuple(views or cfg.tta_views))
    emb, _ = embed_samples(onnx_path, samples, spec, cache=run / f"emb_fp32_{'_'.join(spec.views)}.npz")
    sp, labels, groups, holdout = run_arrays(run, data, samples, split, classes, cfg.holdout_labels)
    unknown_raw = heldout_raw_scores(open_set_from, data, spec.views) if open_set_from is not None else None
    report = evaluate_embeddings(emb, sp, labels, groups, holdout, rule=rule, site=class_sites(classes),
                                 unknown_raw=unknown_raw, unknown_untagged=unknown_untagged)
    report.pop("gallery_keep")
    (run / "evaluation.json").write_text(json.dumps(report, indent=1, default=float))
    return report


def heldout_raw_scores(run: Path, data: Path, views: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Raw scores (per rule) of a holdout run's held-out-class photos outside its report split.

    The run must have been trained with ``holdout_labels`` and exported or evaluated (its embedding cache is
    reused). These photos show landmarks that model never saw: the open-set calibration set for any model of the
    same recipe. The report-split photos of those classes stay untouched for measuring.
    """
    from training.train import load_checkpoint, prepare_data

    run = Path(run)
    cfg, meta, _ = load_checkpoint(run / "checkpoints" / "last.pt")
    if not cfg.holdout_labels:
        raise ValueError(f"{run} left no classes out of training (train it with --holdout)")
    samples, split, classes = prepare_data(cfg, data, run)
    views = tuple(views or cfg.tta_views)
    caches = sorted(run.glob(f"emb_*_{'_'.join(views)}.npz"), key=lambda p: p.stat().st_mtime)
    if not caches:
        raise FileNotFoundError(f"no embedding cache for views {views} in {run}: export or evaluate that run first")
    with np.load(caches[-1]) as z:
        emb = z["emb"]
    sp, labels, groups, holdout = run_arrays(run, data, samples, split, classes, cfg.holdout_labels)
    tr = (sp == "train") & ~holdout
    keep = clean_gallery(emb[tr], labels[tr], groups[tr])
    g_emb, g_lab = emb[tr][keep], labels[tr][keep]
    q = holdout & (sp != "report")
    sims, idx = _search(g_emb, emb[q], SEARCH_K)
    labs = np.where(idx >= 0, g_lab[np.clip(idx, 0, None)], -1)
    return {r: label_scores(sims, labs, r)[1] for r in RULES}


def class_sites(classes: list[str], label_info: Path | None = None, km: float = SITE_KM) -> np.ndarray:
    """Site id per class from the label-info coordinates (classes without coordinates are their own site)."""
    from landmark_tagger.scoring import sites_from_coordinates
    from training.export import label_entries

    entries = label_entries(classes, label_info)
    return sites_from_coordinates([e.get("lat") for e in entries], [e.get("lon") for e in entries], km)


def calibration_for(raw_threshold: float, lo: float, hi: float) -> Calibration:
    """Knots for a raw threshold (helper for tests and hand-made bundles)."""
    return Calibration((lo, raw_threshold, hi), (0.0, THRESHOLD_CONF, 1.0))
