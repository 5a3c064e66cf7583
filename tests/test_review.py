"""The review page: self-contained, escaped, strict CSP; checked in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from landmark_tagger.catalog import open_catalog
from landmark_tagger.cli import app
from landmark_tagger.review import CSP, load_items, order_groups, render

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
EVIL_LANDMARK = "<b>Fort</b><script>alert(3)</script>"

# (file in tests/data/camera, name in the archive, landmark, confidence, status, extra keyword)
PHOTOS = [
    ("nikon_d90_DSC_0003.JPG", "DSC_0003.JPG", "Taj Mahal", 0.97, "tagged", None),
    ("nikon_d90_DSC_0011.JPG", "DSC_0011.JPG", "Taj Mahal", 0.52, "tagged", None),
    ("canon_5d3__K6A7945.JPG", f"{IMG}.jpg", EVIL_LANDMARK, 0.81, "tagged", SCRIPT),
    ("canon_g2_IMG_0308.JPG", "IMG_0308.JPG", None, 0.31, "unknown", SCRIPT),
    ("nikon_d3100_DSC_0008.JPG", "broken.jpg", None, None, "failed", None),
]


def _archive(tmp_path: Path, camera_dir: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    db = tmp_path / "catalog.db"
    with open_catalog(db) as cat:
        for i, (src, name, landmark, conf, status, kw) in enumerate(PHOTOS):
            dest = photos / name
            if status == "failed":
                dest.write_bytes(b"\xff\xd8\xff\xe0 truncated")
            else:
                shutil.copyfile(camera_dir / src, dest)
            keywords = [k for k in (landmark, kw) if k]
            cat.conn.execute(
                "INSERT INTO photos(path, folder, name, stem, ext, group_key, kind, landmark, label, confidence, "
                "own_confidence, decided_by, status, error, keywords, taken_at) "
                "VALUES (?, ?, ?, ?, 'jpg', ?, 'jpeg', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (str(dest), str(photos), name, Path(name).stem, f"{photos}/{name.casefold()}", landmark,
                 landmark and "x", conf, conf, "model" if conf else None, status,
                 "cannot decode: truncated <JPEG>" if status == "failed" else None, json.dumps(keywords),
                 f"2024-05-01T10:0{i}:00"))
    return photos, db


def test_groups_uncertain_first_and_failed_last(tmp_path, camera_dir):
    photos, db = _archive(tmp_path, camera_dir)
    with open_catalog(db) as cat:
        items = load_items(cat)
        assert len(items) == len(PHOTOS)
        assert len(load_items(cat, [str(photos / "DSC_0003.JPG")])) == 1
        assert load_items(cat, [str(tmp_path / "elsewhere")]) == []
    groups = order_groups(items, threshold=0.5)
    names = [g for g, _ in groups]
    assert names[0] == "Taj Mahal"  # holds the photo closest to the threshold (0.52)
    assert [it.confidence for it in groups[0][1]] == [0.52, 0.97]
    assert names[-2:] == ["Not recognised", "Could not be read"]


def test_page_is_escaped_and_self_contained(tmp_path, camera_dir):
    _, db = _archive(tmp_path, camera_dir)
    with open_catalog(db) as cat:
        page = render(load_items(cat), threshold=0.5)
    assert f'content="{CSP.replace(chr(39), "&#x27;")}"' in page
    assert "<script" not in page.lower()  # no script at all, not even the payloads
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page
    assert page.count("data:image/jpeg;base64,") == 4  # every readable photo embedded


@pytest.mark.browser
def test_review_page_in_headless_chromium(tmp_path, camera_dir):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    photos, db = _archive(tmp_path, camera_dir)
    out = tmp_path / "review page.html"
    res = CliRunner().invoke(app, ["review", "--db", str(db), "--out", str(out), "--no-open", "--model",
                                   str(tmp_path / "no-model")])
    assert res.exit_code == 0, res.output
    assert str(out.resolve()) in res.output
    dialogs, requests, errors = [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.resolve().as_uri())
            page.wait_for_load_state("load")
            page.wait_for_timeout(300)
            cards = page.locator("article.card")
            assert cards.count() == len(PHOTOS)
            thumbs = page.locator("img.thumb")
            assert thumbs.count() == 4
            # every embedded thumbnail decoded (naturalWidth > 0): the CSP allows data: images
            widths = page.eval_on_selector_all("img.thumb", "els => els.map(e => e.naturalWidth)")
            assert all(w > 0 for w in widths), widths
            text = page.inner_text("body")
            assert SCRIPT in text and IMG + ".jpg" in text and EVIL_LANDMARK in text
            assert page.locator("img[src='x']").count() == 0
            assert page.locator("script").count() == 0
            assert page.locator("b").count() == 0  # the landmark's <b> stayed text
            assert page.locator(".uncertain").count() == 1  # 0.52: within 0.1 of the fallback 0.5
        finally:
            browser.close()
    assert dialogs == []
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_review_after_scan_and_learn_shows_nearest_references(tmp_path):
    """End to end: scan real photos, teach a landmark, retag, review: taught photos show thumbnails of their
    reference photos; photos decided by the bundle show the nearest bundle landmarks with similarities."""
    import os

    from conftest import LANDMARKS_DIR

    from landmark_tagger import learn
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.errors import BundleError
    from landmark_tagger.paths import user_gallery_path
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.retag import retag
    from landmark_tagger.review import attach_neighbours
    from landmark_tagger.scan import scan
    from landmark_tagger.user_gallery import UserGallery

    try:
        bundle = load_bundle(os.environ.get("LTAG_TEST_BUNDLE") or None)
    except BundleError as e:
        pytest.skip(f"model bundle not installed: {e}")
    folder = tmp_path / "trip"
    folder.mkdir()
    for label in ("lotus_temple", "hawa_mahal"):
        if not (LANDMARKS_DIR / label).is_dir():
            pytest.skip("landmark photos not available")
        for i, f in enumerate(sorted((LANDMARKS_DIR / label).glob("*.jpg"))[:3]):
            shutil.copyfile(f, folder / f"{label}_{i}.jpg")
    db = tmp_path / "catalog.db"
    with open_catalog(db) as cat:
        scan([str(folder)], catalog=cat, bundle=bundle, recognizer=Recognizer(bundle), workers=1, write=False)
        refs = [folder / "lotus_temple_0.jpg", folder / "lotus_temple_1.jpg"]
        learn.learn("Our Lotus", learn.collect(refs, catalog=cat)[0], recognizer=Recognizer(bundle),
                    gallery_path=user_gallery_path(db), catalog=cat)
        gallery = UserGallery.load(user_gallery_path(db))
        retag(cat, Recognizer(bundle, user_gallery=gallery), write=False)
        items = load_items(cat)
        rec = Recognizer(bundle)
        names = [lab.name for lab in bundle.labels]

        def nearest(emb, _gen):
            sims, labels = rec.neighbours(emb, k=5)
            return [[(names[lab], s) for s, lab in zip(srow, lrow, strict=True) if lab >= 0][:2]
                    for srow, lrow in zip(sims.tolist(), labels.tolist(), strict=True)]

        attach_neighbours(items, cat, gallery=gallery, bundle_neighbours=nearest)
    by_name = {it.name: it for it in items}
    taught = by_name["lotus_temple_0.jpg"]
    assert taught.landmark == "Our Lotus"
    assert {Path(n.path).name for n in taught.neighbours} == {"lotus_temple_0.jpg", "lotus_temple_1.jpg"}
    assert taught.neighbours[0].similarity == pytest.approx(1.0, abs=1e-4)  # its own reference first
    bundle_items = [it for it in items if it.landmark != "Our Lotus"]
    assert bundle_items and all(it.neighbours and it.neighbours[0].path is None for it in bundle_items)
    page = render(items, threshold=bundle.threshold)
    assert page.count('<figure title="') == sum(len(it.neighbours) for it in items)
    n_ref_thumbs = sum(1 for it in items for n in it.neighbours if n.path)
    assert n_ref_thumbs >= 2
    assert page.count("data:image/jpeg;base64,") == len(items) + n_ref_thumbs  # photos + reference thumbnails
