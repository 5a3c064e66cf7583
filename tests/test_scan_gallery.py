"""Scan and the user gallery beside the catalog: it is bound to the scan's bundle (its confidence scale; a gallery
taught with another model is ignored, with a warning, instead of producing meaningless matches)."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from conftest import LANDMARKS_DIR

from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import BundleError
from landmark_tagger.paths import user_gallery_path
from landmark_tagger.scan import Scanner
from landmark_tagger.user_gallery import Reference, UserGallery


@pytest.fixture(scope="module")
def bundle():
    from landmark_tagger.bundle import load_bundle

    try:
        return load_bundle(os.environ.get("LTAG_TEST_BUNDLE") or None)
    except BundleError as e:
        pytest.skip(f"model bundle not installed: {e}")


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
