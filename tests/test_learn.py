"""ltag learn / forget / landmarks / --correct with the real bundle on real photos.

Landmark photos are copied from ../shared/data/landmarks into tmp dirs at test time (skipped when absent);
camera files come from tests/data/camera. ``LTAG_TEST_BUNDLE`` may point at another bundle folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CAMERA_DIR, LANDMARKS_DIR
from typer.testing import CliRunner

from landmark_tagger import decode, fsutil, learn
from landmark_tagger.catalog import open_catalog
from landmark_tagger.cli import app
from landmark_tagger.paths import user_gallery_path
from landmark_tagger.user_gallery import MIN_WHITEN_PHOTOS, UserGallery

EXIFTOOL = shutil.which("exiftool")
RAW = "CRW_0113.CRW"  # a real Canon RAW with an embedded JPEG preview (CC0)


@pytest.fixture(scope="module")
def rec(bundle):
    from landmark_tagger.recognizer import Recognizer

    return Recognizer(bundle)


def landmark_files(label: str, n: int, start: int = 0) -> list[Path]:
    d = LANDMARKS_DIR / label
    if not d.is_dir():
        pytest.skip(f"landmark photos not available: {d}")
    files = sorted(d.glob("*.jpg"))[start:start + n]
    assert len(files) == n
    return files


def copy_to(folder: Path, files: list[Path], prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        dest = folder / f"{prefix}{i:03d}_{f.name}"
        shutil.copyfile(f, dest)
        out.append(dest)
    return out


class DecodeCounter:
    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = decode.decode_for_model

        def counting(path, min_side):
            self.paths.append(os.fspath(path))
            return real(path, min_side)

        monkeypatch.setattr(decode, "decode_for_model", counting)


def test_learn_from_jpegs_and_recognise_other_photos_of_them(tmp_path, rec):
    gp = tmp_path / "catalog.gallery.npz"
    lotus = copy_to(tmp_path / "lotus", landmark_files("lotus_temple", 5))
    copy_to(tmp_path / "charar", landmark_files("charar_e_sharif", 5))
    groups, problems = learn.collect(lotus)
    rep = learn.learn("Our Lotus", groups, recognizer=rec, gallery_path=gp, parent="Delhi", gps=(28.5535, 77.2588))
    assert (rep.added, rep.references, rep.failed, problems) == (5, 5, 0, [])
    assert (rep.lat, rep.lon, rep.parent) == (28.5535, 77.2588, "Delhi")
    groups, _ = learn.collect([], from_folder=[tmp_path / "charar"])
    assert learn.learn("Our Shrine", groups, recognizer=rec, gallery_path=gp).added == 5
    g = UserGallery.load(gp)
    assert g.names() == ["Our Lotus", "Our Shrine"] and g.model_id == rec.bundle.model_id
    assert g.bundle_threshold == pytest.approx(rec.bundle.threshold)
    # learning the same photos again adds nothing
    again = learn.learn("our lotus", learn.collect(lotus)[0], recognizer=rec, gallery_path=gp)
    assert again.added == 0 and {p.status for p in again.photos} == {"already"}
    # a gallery written before format 3 names its references by SHA-256: teaching them again is still no
    # duplicate (the references are re-identified by their content hash)
    with np.load(gp, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        arrays = {k: z[k] for k in z.files if k != "meta"}
    meta["version"] = 2
    for d in meta["landmarks"]:
        for r in d["refs"]:
            r["sha256"] = hashlib.sha256(Path(r.pop("path")).read_bytes()).hexdigest()
            r.pop("hash")
            r["path"] = ""
    np.savez(gp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    assert UserGallery.load(gp).has_legacy_refs()
    again = learn.learn("our lotus", learn.collect(lotus)[0], recognizer=rec, gallery_path=gp)
    assert again.added == 0 and {p.status for p in again.photos} == {"already"}
    g = UserGallery.load(gp)
    assert {r.content_hash for r in g.get("Our Lotus").refs} == {fsutil.content_hash_file(p) for p in lotus}
    assert g.has_legacy_refs()  # Our Shrine's references: re-identified when they are next taught or corrected
    # other photos of each landmark: the right taught landmark is the best candidate
    others = {"Our Lotus": landmark_files("lotus_temple", 6, start=5),
              "Our Shrine": landmark_files("charar_e_sharif", 6, start=5)}
    for name, files in others.items():
        items = learn.embed_groups(learn.collect(files)[0], rec)
        sc = g.score(np.stack([it.generic for it in items]), rec.bundle.threshold)
        hits = [sc.name(i) for i in range(len(files))]
        assert hits.count(name) >= 5, (name, hits)
    # a taught photo itself is recognised through the recognizer's user-gallery hook
    items = learn.embed_groups(learn.collect(lotus[:1])[0], rec)
    from landmark_tagger.recognizer import Recognizer

    with_user = Recognizer(rec.bundle, user_gallery=g)
    d = with_user.decide(items[0].emb[None], items[0].generic[None])[0]
    assert (d.label, d.name, d.source) == ("user:Our Lotus", "Our Lotus", "user")
    assert d.confidence >= rec.bundle.threshold


def test_learn_from_raw_and_raw_jpeg_pair(tmp_path, rec, monkeypatch):
    gp = tmp_path / "g.npz"
    folder = tmp_path / "card"
    folder.mkdir()
    shutil.copyfile(CAMERA_DIR / RAW, folder / "IMG_0113.CRW")
    counter = DecodeCounter(monkeypatch)
    rep = learn.learn("Lone RAW", learn.collect([folder / "IMG_0113.CRW"])[0], recognizer=rec, gallery_path=gp)
    assert rep.added == 1 and counter.paths == [str(folder / "IMG_0113.CRW")]  # its embedded preview
    # a RAW+JPEG pair is one photo: the JPEG is embedded, the RAW listed as its companion
    shutil.copyfile(CAMERA_DIR / "canon_g2_IMG_0308.JPG", folder / "IMG_0308.JPG")
    shutil.copyfile(CAMERA_DIR / RAW, folder / "IMG_0308.CRW")
    counter.paths.clear()
    rep = learn.learn("Pair", learn.collect([folder / "IMG_0308.JPG", folder / "IMG_0308.CRW"])[0], recognizer=rec,
                      gallery_path=gp)
    assert rep.added == 1 and len(rep.photos) == 1
    assert rep.photos[0].companions == [str(folder / "IMG_0308.CRW")]
    assert counter.paths == [str(folder / "IMG_0308.JPG")]
    g = UserGallery.load(gp)
    assert g.get("Pair").refs[0].content_hash == fsutil.content_hash_file(folder / "IMG_0308.JPG")


def test_bad_files_are_reported_and_never_fatal(tmp_path, rec):
    gp = tmp_path / "g.npz"
    folder = tmp_path / "mixed"
    good = copy_to(folder, landmark_files("lotus_temple", 2))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    (folder / "notes.txt").write_text("not a photo")
    groups, problems = learn.collect([], from_folder=[folder])
    rep = learn.learn("Lotus", groups, recognizer=rec, gallery_path=gp)
    assert rep.added == 2 and rep.failed == 1
    bad = [p for p in rep.photos if p.status == "failed"][0]
    assert bad.path.endswith("broken.jpg") and bad.error
    with pytest.raises(learn.LearnError, match="none of the photos could be read"):
        learn.learn("Nothing", learn.collect([folder / "broken.jpg"])[0], recognizer=rec, gallery_path=gp)
    assert UserGallery.load(gp).names() == ["Lotus"] and len(good) == 2


def test_learn_reuses_scanned_features_without_decoding(tmp_path, rec, monkeypatch):
    from landmark_tagger.scan import scan

    photos = copy_to(tmp_path / "trip", landmark_files("hawa_mahal", 3))
    with open_catalog(tmp_path / "catalog.db") as cat:
        scan([str(tmp_path / "trip")], catalog=cat, bundle=rec.bundle, recognizer=rec, workers=1, write=False)
        counter = DecodeCounter(monkeypatch)
        groups, _ = learn.collect([], from_folder=[tmp_path / "trip"], catalog=cat)
        rep = learn.learn("Palace of Winds", groups, recognizer=rec, gallery_path=tmp_path / "catalog.gallery.npz",
                          catalog=cat)
        assert rep.added == 3 and all(p.reused for p in rep.photos) and counter.paths == []
        assert cat.rows("SELECT kind FROM runs ORDER BY id DESC LIMIT 1")[0]["kind"] == "learn"
    assert len(photos) == 3


def test_median_gps_and_parse_gps():
    assert learn.median_gps([(69.2, -51.1), (69.2001, -51.1002), (69.1999, -51.0999)]) == (69.2, -51.1)
    assert learn.median_gps([(69.2, -51.1), (48.85, 2.35)]) is None  # photos of different places
    assert learn.parse_gps("69.13,-49.93") == (69.13, -49.93)
    for bad in ("69.1", "a,b", "91,0", "0,181", "nan,1"):
        with pytest.raises(learn.LearnError):
            learn.parse_gps(bad)


def _cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_learn_landmarks_forget_export_import(tmp_path, bundle):
    model = str(bundle.path)
    db_a, db_b = tmp_path / "a" / "catalog.db", tmp_path / "b" / "catalog.db"
    copy_to(tmp_path / "lotus", landmark_files("lotus_temple", 3))
    out = _cli("learn", "Our Lotus", "--from-folder", str(tmp_path / "lotus"), "--parent", "Delhi", "--gps",
               "28.5535,77.2588", "--db", str(db_a), "--model", model)
    assert "Learned Our Lotus (in Delhi) at 28.55350,77.25880: 3 new reference(s)" in out
    listing = json.loads(_cli("landmarks", "--json", "--db", str(db_a), "--model", model))
    assert [u["name"] for u in listing["user"]] == ["Our Lotus"] and listing["user"][0]["references"] == 3
    assert len(listing["bundle"]) == len(bundle.labels)
    assert all(b["references"] for b in listing["bundle"])  # gallery images per bundle landmark
    exported = tmp_path / "moving" / "mine.npz"
    _cli("landmarks", "--db", str(db_a), "export", str(exported))
    _cli("landmarks", "--db", str(db_b), "import", str(exported))
    ga, gb = UserGallery.load(user_gallery_path(db_a)), UserGallery.load(user_gallery_path(db_b))
    assert gb.names() == ga.names() and gb.model_id == ga.model_id
    assert np.array_equal(gb.get("Our Lotus").vectors, ga.get("Our Lotus").vectors)
    assert gb.get("Our Lotus").lat == 28.5535 and gb.get("Our Lotus").parent == "Delhi"
    assert "0 new landmark(s), 0 new reference(s)" in _cli("landmarks", "--db", str(db_b), "import", str(exported))
    assert "Forgot Our Lotus (3 reference(s))" in _cli("forget", "our lotus", "--db", str(db_a))
    assert len(UserGallery.load(user_gallery_path(db_a))) == 0
    res = CliRunner().invoke(app, ["forget", "Our Lotus", "--db", str(db_a)])
    assert res.exit_code == 1 and "No taught landmark is called" in str(res.output or res.exception)
    res = CliRunner().invoke(app, ["landmarks", "--db", str(db_a), "import", str(tmp_path / "lotus" / "none.npz")])
    assert res.exit_code == 1


def _keywords(path: Path) -> list[str]:
    out = subprocess.run([EXIFTOOL, "-j", "-XMP-dc:Subject", str(path)], capture_output=True, text=True, check=True)
    v = json.loads(out.stdout)[0].get("Subject", [])
    return [str(x) for x in (v if isinstance(v, list) else [v])]


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
def test_correct_replaces_the_wrong_tag_in_the_file_and_is_undoable(tmp_path, bundle):
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.scan import scan
    from landmark_tagger.undo import undo

    rec0 = Recognizer(bundle, threshold=0.0)  # tags every photo with its best guess: a "wrong" tag to correct
    photo = copy_to(tmp_path / "trip", landmark_files("lotus_temple", 1))[0]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject+=my own keyword", str(photo)], check=True)
    db = tmp_path / "catalog.db"
    with open_catalog(db) as cat:
        scan([str(photo)], catalog=cat, bundle=bundle, recognizer=rec0, workers=1)
        wrong = cat.photo_by_path(str(photo))["landmark"]
        assert wrong and wrong in _keywords(photo)
        before = photo.read_bytes()
        rep = learn.correct(photo, "Lotus Temple (mine)", recognizer=Recognizer(bundle),
                            gallery_path=user_gallery_path(db), catalog=cat)
        kws = _keywords(photo)
        assert "Lotus Temple (mine)" in kws and wrong not in kws and "my own keyword" in kws
        row = cat.photo_by_path(str(photo))
        assert (row["landmark"], row["label"], row["decided_by"]) == ("Lotus Temple (mine)", "user:Lotus Temple (mine)",
                                                                      "correction")
        assert rep.wrong == wrong and rep.writes[0]["status"] == "written"
        g = UserGallery.load(user_gallery_path(db))
        assert g.get("Lotus Temple (mine)").refs[0].content_hash == fsutil.content_hash(before)
        undo(cat, run_id=rep.run_id)
        assert photo.read_bytes() == before  # byte-exact


def _without_bundle_background(bundle, folder: Path):
    """The same bundle minus the optional ``generic`` gallery array (model and labels linked, not copied)."""
    from landmark_tagger.bundle import load_bundle

    folder.mkdir()
    for name in ("model.onnx", "labels.json"):
        (folder / name).symlink_to((bundle.path / name).resolve())
    with np.load(bundle.path / "gallery.npz") as z:
        np.savez(folder / "gallery.npz", embeddings=z["embeddings"], labels=z["labels"])
    return load_bundle(folder)


def test_background_comes_from_the_bundle_when_present(tmp_path, rec):
    gen = rec.bundle.gallery_generic()
    if gen is None:
        pytest.skip("this bundle ships no generic features for its references")
    _, lab = rec.bundle.gallery()
    assert learn.distractors_for(rec.bundle, None) is gen  # the bundle's references, no catalog needed
    lotus = copy_to(tmp_path / "new", landmark_files("lotus_temple", 2))
    gp = tmp_path / "user.gallery.npz"
    learn.learn("Our Lotus", learn.collect(lotus)[0], recognizer=rec, gallery_path=gp, catalog=None)
    g = UserGallery.load(gp)
    assert g.distractors.shape == gen.shape  # saved with the gallery as its background
    # the whitening is learned from the bundle's labelled references and saved with the gallery
    assert g.whitening is not None and g.whitening.info["background"] == len(gen)
    assert g.whitening.info["references"] == 2  # the taught photos take part too
    assert g.whitening.info["landmarks"] == len(set(lab.tolist())) + 1
    # the bundle's reference photos of the other landmarks are not taken for the taught one
    others = gen[lab != rec.bundle.label_ids.index("lotus_temple")]
    assert (g.score(others, rec.bundle.threshold).confidence < rec.bundle.threshold).all()


def test_binding_a_gallery_without_whitening_re_derives_it_from_the_bundle(tmp_path, rec):
    if rec.bundle.gallery_generic() is None:
        pytest.skip("this bundle ships no generic features for its references")
    lotus = copy_to(tmp_path / "new", landmark_files("lotus_temple", 2))
    gp = tmp_path / "user.gallery.npz"
    learn.learn("Our Lotus", learn.collect(lotus)[0], recognizer=rec, gallery_path=gp, catalog=None)
    g = UserGallery.load(gp)
    whitened = g.get("Our Lotus").threshold
    g.set_distractors(g.distractors)  # a background without labels: raw features, as a version 1 gallery
    assert g.whitening is None and g.get("Our Lotus").threshold != pytest.approx(whitened)
    assert g.bind(rec.bundle)
    assert g.whitening is not None and g.get("Our Lotus").threshold == pytest.approx(whitened, abs=1e-5)


def test_background_comes_from_confidently_tagged_catalog_photos(tmp_path, rec):
    from landmark_tagger.recognizer import Recognizer
    from landmark_tagger.scan import scan

    rec = Recognizer(_without_bundle_background(rec.bundle, tmp_path / "bundle"))  # else the bundle's comes first
    assert learn.distractors_for(rec.bundle, None) is None
    copy_to(tmp_path / "trip", landmark_files("taj_mahal", 4))
    lotus = copy_to(tmp_path / "new", landmark_files("lotus_temple", 2))
    with open_catalog(tmp_path / "catalog.db") as cat:
        scan([str(tmp_path / "trip")], catalog=cat, bundle=rec.bundle, recognizer=rec, workers=1, write=False)
        confident = cat.rows("SELECT p.id FROM photos p JOIN embeddings e ON e.photo_id = p.id WHERE p.label IS NOT "
                             "NULL AND p.confidence >= ?", (rec.bundle.threshold + learn.DISTRACTOR_MARGIN,))
        bg = learn.distractors_for(rec.bundle, cat)
        if not confident:
            assert bg is None or len(bg) == 0
            pytest.skip("the bundle tagged none of these photos confidently")
        assert bg.shape == (len(confident), rec.bundle.generic_dim)
        gp = tmp_path / "catalog.gallery.npz"
        learn.learn("Our Lotus", learn.collect(lotus)[0], recognizer=rec, gallery_path=gp, catalog=cat)
        g = UserGallery.load(gp)
        assert g.distractors.shape == bg.shape  # kept with the gallery as its background
        # a handful of tagged photos is too few to learn a whitening from: raw generic features
        assert len(bg) >= MIN_WHITEN_PHOTOS or g.whitening is None
        # the background photos themselves are not taken for the taught landmark
        sc = g.score(bg, rec.bundle.threshold)
        assert (sc.confidence < rec.bundle.threshold).all()


def test_learn_from_search(tmp_path, rec):
    from landmark_tagger.scan import scan

    copy_to(tmp_path / "2023" / "lotus-trip", landmark_files("lotus_temple", 3), prefix="lotus ")
    copy_to(tmp_path / "2023" / "other", landmark_files("hawa_mahal", 2), prefix="palace ")
    with open_catalog(tmp_path / "catalog.db") as cat:
        scan([str(tmp_path / "2023")], catalog=cat, bundle=rec.bundle, recognizer=rec, workers=1, write=False)
        groups, problems = learn.collect([], from_search="lotus -palace", catalog=cat)  # file names
        assert problems == [] and len(groups) == 3
        assert all("lotus-trip" in g.primary.path for g in groups)
        rep = learn.learn("Our Lotus", groups, recognizer=rec, gallery_path=tmp_path / "g.npz", catalog=cat)
        assert rep.added == 3 and all(p.reused for p in rep.photos)
        _, problems = learn.collect([], from_search="nothingmatchesthis", catalog=cat)
        assert problems == ["the search 'nothingmatchesthis' found no photos"]


def test_cli_landmarks_table_shows_whole_positions_on_a_narrow_terminal(tmp_path, bundle):
    # found by the end-to-end review: at 80 columns (64 here: no taught landmark) the position column was cut ("10.7828,79.13…")
    env = dict(os.environ, COLUMNS="64", LTAG_DB=str(tmp_path / "catalog.db"))
    res = subprocess.run([sys.executable, "-m", "landmark_tagger", "landmarks", "--model", str(bundle.path)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    positions = [f"{lm.lat:.4f},{lm.lon:.4f}" for lm in bundle.labels if lm.lat is not None]
    assert positions and all(p in res.stdout for p in positions)
