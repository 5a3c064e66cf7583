"""Retagging from stored features: no decoding, only ltag's keywords change, forget reverts, scan --retag hook."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import LANDMARKS_DIR

from landmark_tagger import decode, learn, metadata
from landmark_tagger.catalog import open_catalog
from landmark_tagger.paths import user_gallery_path
from landmark_tagger.retag import retag
from landmark_tagger.user_gallery import UserGallery


def _photos(dest: Path, label: str, n: int) -> list[Path]:
    d = LANDMARKS_DIR / label
    if not d.is_dir():
        pytest.skip(f"landmark photos not available: {d}")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(sorted(d.glob("*.jpg"))[:n]):
        p = dest / f"{label}_{i}.jpg"
        shutil.copyfile(f, p)
        out.append(p)
    return out


@pytest.fixture()
def decodes(monkeypatch):
    seen: list[str] = []
    real = decode.decode_for_model

    def counting(path, min_side):
        seen.append(os.fspath(path))
        return real(path, min_side)

    monkeypatch.setattr(decode, "decode_for_model", counting)
    return seen


def _scanned(tmp_path, bundle):
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.scan import scan

    folder = tmp_path / "archive"
    lotus = _photos(folder, "lotus_temple", 4)
    other = _photos(folder, "hawa_mahal", 2)
    db = tmp_path / "catalog.db"
    cat = open_catalog(db)
    scan([str(folder)], catalog=cat, bundle=bundle, recognizer=Recognizer(bundle), workers=1)
    return cat, db, folder, lotus, other


def test_retag_after_learning_decodes_nothing_and_changes_only_ltag_keywords(tmp_path, bundle, decodes):
    from landmark_tagger.recognizer import Recognizer

    cat, db, folder, lotus, other = _scanned(tmp_path, bundle)
    with cat:
        before = {p: cat.photo_by_path(str(p)) for p in [*lotus, *other]}
        decodes.clear()
        gp = user_gallery_path(db)
        rep = learn.learn("Our Lotus", learn.collect(lotus[:2], catalog=cat)[0], recognizer=Recognizer(bundle),
                          gallery_path=gp, catalog=cat)
        assert rep.added == 2 and all(p.reused for p in rep.photos)
        report = retag(cat, Recognizer(bundle, user_gallery=UserGallery.load(gp)), write=True, sequence=False)
        assert decodes == []  # neither learning from scanned photos nor retagging decoded a photo
        assert report.rows == 6
        for p in lotus[:2]:  # the taught photos match themselves exactly: confidence 1, user landmarks win ties
            row = cat.photo_by_path(str(p))
            assert (row["landmark"], row["label"], row["status"]) == ("Our Lotus", "user:Our Lotus", "tagged")
            assert row["confidence"] == pytest.approx(1.0)
            kw = metadata.read_keywords(p)
            assert "Our Lotus" in kw.flat and "Landmarks|Our Lotus" in kw.hierarchical
            old = before[p]["landmark"]
            if old and old != "Our Lotus":
                assert old not in kw.flat  # ltag's old landmark keyword removed
        assert report.changed >= 2 and report.run_id is not None
        # forgetting the landmark and retagging brings back what the bundle decides, still without decoding
        learn.forget("Our Lotus", gallery_path=gp)
        retag(cat, Recognizer(bundle, user_gallery=UserGallery.load(gp)), write=True, sequence=False)
        assert decodes == []
        for p in lotus[:2]:
            row = cat.photo_by_path(str(p))
            assert row["landmark"] == before[p]["landmark"]
            assert "Our Lotus" not in metadata.read_keywords(p).flat


def test_retag_no_write_marks_pending_and_leaves_files_alone(tmp_path, bundle, decodes):
    from landmark_tagger.recognizer import Recognizer

    cat, db, folder, lotus, _ = _scanned(tmp_path, bundle)
    with cat:
        gp = user_gallery_path(db)
        learn.learn("Our Lotus", learn.collect(lotus[:1], catalog=cat)[0], recognizer=Recognizer(bundle),
                    gallery_path=gp, catalog=cat)
        data = {p: p.read_bytes() for p in folder.iterdir()}
        decodes.clear()
        rep = retag(cat, Recognizer(bundle, user_gallery=UserGallery.load(gp)), write=False)
        assert decodes == [] and rep.run_id is None and rep.changed >= 1
        assert {p: p.read_bytes() for p in folder.iterdir()} == data
        row = cat.photo_by_path(str(lotus[0]))
        assert (row["landmark"], row["write_status"]) == ("Our Lotus", "pending")


def test_scan_retag_uses_the_stored_features(tmp_path, bundle, decodes):
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.scan import scan

    cat, db, folder, lotus, _ = _scanned(tmp_path, bundle)
    with cat:
        gp = user_gallery_path(db)
        learn.learn("Our Lotus", learn.collect(lotus[:1], catalog=cat)[0], recognizer=Recognizer(bundle),
                    gallery_path=gp, catalog=cat)
        decodes.clear()
        scan([str(folder)], catalog=cat, bundle=bundle, workers=1, retag=True)
        assert decodes == []
        assert cat.photo_by_path(str(lotus[0]))["landmark"] == "Our Lotus"
        assert "Our Lotus" in metadata.read_keywords(lotus[0]).flat
