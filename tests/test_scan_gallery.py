"""Scan and the user gallery beside the catalog: it is bound to the scan's bundle (its confidence scale; a gallery
taught with another model is ignored, with a warning, instead of producing meaningless matches)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import LANDMARKS_DIR, copy_landmark_day

from landmark_tagger.catalog import open_catalog
from landmark_tagger.paths import user_gallery_path
from landmark_tagger.scan import Scanner
from landmark_tagger.user_gallery import Reference, UserGallery


def _scan_with_gallery(tmp_path, bundle, model_id: str) -> Scanner:
    src = sorted((LANDMARKS_DIR / "lotus_temple").glob("*.jpg"))[:1]
    if not src:
        pytest.skip(f"landmark photos not available: {LANDMARKS_DIR}")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(src[0], folder / "a.jpg")
    db = tmp_path / "catalog.db"
    g = UserGallery(model_id, bundle_threshold=0.7)  # saved with another scale than the bundle's 0.5
    vecs = np.random.default_rng(0).standard_normal((3, bundle.generic_dim)).astype(np.float32)
    g.add("Our Place", [Reference(f"{i:064d}", f"/x/{i}.jpg") for i in range(3)], vecs, model_id=model_id)
    g.save(user_gallery_path(db))
    s = Scanner(open_catalog(db), bundle=bundle, write=False, workers=1)
    rep = s.run([folder])
    assert rep.counts["tagged"] + rep.counts["unknown"] == 1
    return s


def test_gallery_of_another_model_is_disabled(tmp_path, bundle, caplog):
    assert bundle.threshold != 0.7
    with caplog.at_level(logging.WARNING):
        s = _scan_with_gallery(tmp_path, bundle, "some-other-model-1")
    ug = s.recognizer.user_gallery
    assert ug is not None and ug.enabled is False
    assert ug.bundle_threshold == pytest.approx(bundle.threshold)
    assert "some-other-model-1" in caplog.text
    assert s.recognizer.user_gallery.decide_generic(np.ones((1, bundle.generic_dim), np.float32)) == [None]


def test_gallery_of_this_model_takes_the_bundle_threshold(tmp_path, bundle):
    s = _scan_with_gallery(tmp_path, bundle, bundle.model_id)
    ug = s.recognizer.user_gallery
    assert ug.enabled is True and ug.bundle_threshold == pytest.approx(bundle.threshold)


def test_scan_retag_keeps_the_photos_own_confidence(tmp_path, bundle):
    """``scan --retag`` with sequence consensus: a photo whose tag the consensus changed stores the adjusted
    confidence, and its own (the model's) confidence stays in ``own_confidence``."""
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.retag import redecide
    from landmark_tagger.scan import scan

    folder = tmp_path / "day"
    srcs = copy_landmark_day(folder, ("taj_mahal", "hawa_mahal"), 6)
    def timed(cat):  # two bursts, one per landmark, minutes apart
        for i in range(len(srcs)):
            cat.conn.execute("UPDATE photos SET taken_at = ? WHERE name = ?",
                             (f"2024-05-01T{10 + i // 6}:{(i % 6) * 2:02d}:00", f"IMG_{i:02d}.jpg"))

    with open_catalog(tmp_path / "first.db") as cat:
        scan([str(folder)], catalog=cat, bundle=bundle, recognizer=Recognizer(bundle), workers=1, write=False)
        timed(cat)
        path = dict(cat.conn.execute("SELECT id, path FROM photos"))
        own = {path[pid]: d.confidence for pid, d in redecide(cat, Recognizer(bundle), sequence=False).items()}
    # A threshold just above the least confident photo: a scan leaves it unknown, and its confident neighbours in
    # time lift it over the threshold on the retag.
    rec = Recognizer(bundle, threshold=min(own.values()) + 0.01)
    with open_catalog(tmp_path / "catalog.db") as cat:
        scan([str(folder)], catalog=cat, bundle=bundle, recognizer=rec, workers=1, write=False)
        timed(cat)
        scan([str(folder)], catalog=cat, bundle=bundle, recognizer=rec, workers=1, write=False, retag=True)
        rows = cat.rows("SELECT path, confidence, own_confidence, decided_by FROM photos")
    by_seq = [r for r in rows if r["decided_by"] == "sequence"]
    assert by_seq, "the consensus changed no tag: this test needs a photo it changes"
    for r in rows:
        assert r["own_confidence"] == pytest.approx(own[r["path"]], abs=1e-5)
    assert any(abs(r["confidence"] - r["own_confidence"]) > 1e-6 for r in by_seq)
