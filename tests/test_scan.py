"""The scan pipeline end to end on real camera files and the shipped model: tagging, RAW+JPEG pairing,
sidecars, incremental rescans, moved files, --no-write + write, --sidecar-only, --retag ownership, undo.

Most tests use ``threshold=0.0`` so that every decodable photo gets its best landmark: the tests check what
scan does with a decision (keywords, sidecars, catalog), not how good the model is (that is the model
benchmark's job). Landmark photos are copied from ``../shared/data/landmarks`` into a temp folder at test
time (never into the repository); tests that need them skip when that folder is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import LANDMARKS_DIR, camera_file

from landmark_tagger import fsutil, metadata, undo
from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import BundleError
from landmark_tagger.scan import scan, write_pending

EXIFTOOL = shutil.which("exiftool") or "/usr/bin/exiftool"
MODEL = os.environ.get("LTAG_TEST_MODEL")  # default: the shipped bundle
needs_exiftool = pytest.mark.skipif(not os.path.exists(EXIFTOOL), reason="exiftool not installed")

JPG = "nikon_d90_DSC_0003.JPG"
RAW = "sony_a330_truncated_100k.arw"  # a real RAW with an embedded JPEG preview (truncated: preview only)


@pytest.fixture(scope="module")
def bundle():
    from landmark_tagger.bundle import load_bundle

    try:
        return load_bundle(MODEL)
    except BundleError as e:
        pytest.skip(f"default model bundle not installed: {e}")


@pytest.fixture(scope="module")
def rec0(bundle):
    """A recognizer that tags every photo with its best landmark (threshold 0)."""
    from landmark_tagger.recognizer import Recognizer

    return Recognizer(bundle, threshold=0.0)


@pytest.fixture()
def cat(tmp_path):
    c = open_catalog(tmp_path / "db" / "catalog.db")
    yield c
    c.close()


def landmark_photos(n: int) -> list[Path]:
    if not LANDMARKS_DIR.is_dir():
        pytest.skip(f"landmark photos not available: {LANDMARKS_DIR}")
    out = []
    for d in sorted(p for p in LANDMARKS_DIR.iterdir() if p.is_dir()):
        files = sorted(d.glob("*.jpg"))
        if files:
            out.append(files[0])
        if len(out) == n:
            break
    return out


def exif_keywords(path) -> dict[str, list[str]]:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-IPTC:Keywords", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject",
                          str(path)], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)[0]

    def lst(k):
        v = d.get(k, [])
        return [str(x) for x in (v if isinstance(v, list) else [v])]

    return {"iptc": lst("IPTC:Keywords"), "subject": lst("XMP-dc:Subject"), "hier": lst("XMP-lr:HierarchicalSubject")}


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): fsutil.sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def image_data(path) -> bytes:
    data = Path(path).read_bytes()
    return data[metadata.jpeg_header_end(data):]


def _scan(paths, cat, rec, **kw):
    results = []
    rep = scan([str(p) for p in paths], catalog=cat, recognizer=rec, workers=kw.pop("workers", 2),
               on_result=results.append, model_dir=MODEL, **kw)
    return rep, {Path(r.path).name: r for r in results}


@needs_exiftool
def test_scan_tags_jpegs_and_raw_pair_and_rescan_is_a_noop(tmp_path, cat, rec0):
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    shutil.copy(camera_file(JPG), photos / "trip" / "DSC_0003.JPG")
    shutil.copy(camera_file(RAW), photos / "trip" / "DSC_0003.ARW")  # RAW+JPEG pair: one photo
    shutil.copy(camera_file("canon_5d3__K6A7945.JPG"), photos / "portrait.JPG")  # EXIF-rotated
    shutil.copy(camera_file("CRW_0113.CRW"), photos / "CRW_0113.CRW")  # RAW alone: recognised from its preview
    raw_sha = fsutil.sha256_file(photos / "trip" / "DSC_0003.ARW")
    crw_sha = fsutil.sha256_file(photos / "CRW_0113.CRW")
    pixels = {p: image_data(photos / p) for p in ("trip/DSC_0003.JPG", "portrait.JPG")}

    rep, res = _scan([photos], cat, rec0)
    assert rep.counts["tagged"] == 4 and rep.counts["failed"] == 0, rep.problems
    assert rep.embedded == 3  # the pair is recognised once (from the JPEG)
    j, r = res["DSC_0003.JPG"], res["DSC_0003.ARW"]
    assert j.group == r.group and j.landmark == r.landmark and j.landmark
    assert j.target.endswith("DSC_0003.JPG") and r.target.endswith("trip/DSC_0003.xmp")
    # keywords read back by exiftool: in the JPEG, in the RAW's sidecar; the RAWs are never written
    for f in ("trip/DSC_0003.JPG", "trip/DSC_0003.xmp"):
        kw = exif_keywords(photos / f)
        assert kw["subject"] == [j.landmark] and kw["hier"] == [f"Landmarks|{j.landmark}"], (f, kw)
    assert exif_keywords(photos / "trip/DSC_0003.JPG")["iptc"] == [j.landmark]
    assert fsutil.sha256_file(photos / "trip" / "DSC_0003.ARW") == raw_sha
    assert fsutil.sha256_file(photos / "CRW_0113.CRW") == crw_sha
    assert (photos / "CRW_0113.xmp").exists()
    for p, data in pixels.items():
        assert image_data(photos / p) == data, p  # compressed pixel data byte-identical
    rows = {Path(r["path"]).name: r for r in cat.rows("SELECT * FROM photos")}
    assert rows["DSC_0003.ARW"]["role"] == "companion" and rows["DSC_0003.JPG"]["role"] == "primary"
    assert rows["portrait.JPG"]["camera"] and rows["portrait.JPG"]["taken_at"].startswith("2023-09-01")
    assert rows["DSC_0003.JPG"]["model_id"] == rec0.bundle.model_id
    assert rows["DSC_0003.JPG"]["content_hash"] == fsutil.content_hash_file(photos / "trip/DSC_0003.JPG")
    assert cat.rows("SELECT COUNT(*) AS n FROM embeddings")[0]["n"] == 3

    before = hashes(photos)
    rep2, res2 = _scan([photos], cat, None)  # no recognizer given: it must not even be loaded
    assert rep2.counts["unchanged"] == 4 and rep2.counts["tagged"] == 0
    assert not rep2.model_loaded and rep2.decoded == 0
    assert hashes(photos) == before  # idempotent: nothing written twice
    assert {r.status for r in res2.values()} == {"unchanged"}
    assert res2["DSC_0003.JPG"].landmark == j.landmark


def test_orientation_reaches_the_model(tmp_path, rec0):
    """The decoder applies EXIF orientation: the rotated 5D III frames come out portrait."""
    from landmark_tagger import decode, preprocess

    img = decode.decode_for_model(camera_file("canon_5d3__K6A7945.JPG"), preprocess.min_decode_side(rec0.bundle.preprocess))
    assert img.height > img.width


@needs_exiftool
def test_moved_files_keep_their_decision_without_recognition(tmp_path, cat, rec0):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (JPG, "nikon_d90_DSC_0011.JPG", "canon_g2_IMG_0308.JPG"):
        shutil.copy(camera_file(name), photos / name)
    shutil.copy(camera_file(RAW), photos / "nikon_d90_DSC_0011.ARW")  # a RAW+JPEG pair
    rep, res = _scan([photos], cat, rec0)
    decided = {n: (r.landmark, r.confidence) for n, r in res.items()}
    ids = {Path(r["path"]).name: r["id"] for r in cat.rows("SELECT id, path FROM photos")}
    (photos / "2021").mkdir()
    os.rename(photos / JPG, photos / "2021" / "renamed.jpg")  # moved and renamed outside ltag
    os.utime(photos / "canon_g2_IMG_0308.JPG")  # touched only: same content
    for ext in ("JPG", "ARW", "xmp"):  # the pair moves with its sidecar
        os.rename(photos / f"nikon_d90_DSC_0011.{ext}", photos / "2021" / f"DSC_0011.{ext}")
    rep2, res2 = _scan([photos], cat, None)
    assert rep2.counts["moved"] == 3 and rep2.decoded == 0 and not rep2.model_loaded
    assert cat.photo_by_path(str(photos / "2021" / "DSC_0011.ARW"))["id"] == ids["nikon_d90_DSC_0011.ARW"]
    assert res2["DSC_0011.ARW"].status == "unchanged" and res2["DSC_0011.ARW"].landmark == decided["nikon_d90_DSC_0011.JPG"][0]
    assert res2["renamed.jpg"].status == "unchanged" and res2["renamed.jpg"].moved_from.endswith(JPG)
    row = cat.photo_by_path(str(photos / "2021" / "renamed.jpg"))
    assert row["id"] == ids[JPG] and (row["landmark"], row["confidence"]) == decided[JPG]
    assert row["folder"] == str(photos / "2021")
    assert cat.photo_by_path(str(photos / JPG)) is None
    assert cat.rows("SELECT COUNT(*) AS n FROM photos")[0]["n"] == 4  # no stale rows left behind


@needs_exiftool
def test_no_write_then_write_and_dry_run(tmp_path, cat, rec0):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(camera_file(JPG), photos / "a.jpg")
    shutil.copy(camera_file(JPG), photos / "b.JPG")
    shutil.copy(camera_file(RAW), photos / "b.ARW")
    before = hashes(photos)
    rep, res = _scan([photos], cat, rec0, write=False)
    assert rep.counts["tagged"] == 3 and rep.counts["pending"] == 3
    assert hashes(photos) == before
    assert {r["write_status"] for r in cat.rows("SELECT write_status FROM photos")} == {"pending"}

    db = Path(cat.path)
    db_before = (fsutil.sha256_file(db), hashes(photos))
    drep = write_pending(cat, [photos], dry_run=True)
    assert drep.counts["would_write"] == 3 and {t for t, _, _ in drep.planned_writes} == {
        str(photos / "a.jpg"), str(photos / "b.JPG"), str(photos / "b.xmp")}
    assert (fsutil.sha256_file(db), hashes(photos)) == db_before

    wrep = write_pending(cat, [photos])
    assert wrep.counts["written"] == 3, wrep.problems
    landmark = res["a.jpg"].landmark
    assert exif_keywords(photos / "a.jpg")["subject"] == [landmark]
    assert exif_keywords(photos / "b.xmp")["hier"] == [f"Landmarks|{landmark}"]
    assert {r["write_status"] for r in cat.rows("SELECT write_status FROM photos")} == {"written"}
    rep3, _ = _scan([photos], cat, None)
    assert rep3.counts["unchanged"] == 3 and not rep3.model_loaded
    undo.undo(cat)  # the write run
    assert hashes(photos) == before


@needs_exiftool
@pytest.mark.parametrize("style,side", [("adobe", "a.xmp"), ("darktable", "a.jpg.xmp")])
def test_sidecar_only_never_touches_originals(tmp_path, cat, rec0, style, side):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(camera_file(JPG), photos / "a.jpg")
    before = fsutil.sha256_file(photos / "a.jpg")
    rep, res = _scan([photos], cat, rec0, sidecar_only=True, sidecar_style=style)
    assert rep.counts["written"] == 1
    assert fsutil.sha256_file(photos / "a.jpg") == before
    assert exif_keywords(photos / side)["subject"] == [res["a.jpg"].landmark]


@needs_exiftool
def test_retag_replaces_only_ltags_keywords(tmp_path, cat, rec0, bundle):
    from landmark_tagger.recognizer import Recognizer

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(camera_file(JPG), photos / "a.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-Keywords=Family", "-XMP-dc:Subject=Family",
                    str(photos / "a.jpg")], check=True)
    rep, res = _scan([photos], cat, rec0)
    name = res["a.jpg"].landmark
    assert exif_keywords(photos / "a.jpg")["subject"] == ["Family", name]
    # nothing reaches a threshold of 1: the re-decision (from stored embeddings, no decoding) is "unknown"
    strict = Recognizer(bundle, threshold=1.0)
    rep2, res2 = _scan([photos], cat, strict, retag=True)
    assert rep2.decoded == 0 and res2["a.jpg"].status == "unknown"
    kw = exif_keywords(photos / "a.jpg")
    assert kw["subject"] == ["Family"] and kw["iptc"] == ["Family"] and kw["hier"] == []
    assert cat.photo_by_path(str(photos / "a.jpg"))["landmark"] is None


def test_undo_restores_a_scan_byte_exact(tmp_path, cat, rec0):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (JPG, "canon_5d3__K6A7946.JPG", "nikon_e995_DSCN1325.JPG"):
        shutil.copy(camera_file(name), photos / name)
    shutil.copy(camera_file(RAW), photos / "nikon_d90_DSC_0003.ARW")
    before = hashes(photos)
    rep, _ = _scan([photos], cat, rec0)
    assert rep.counts["written"] == 4 and hashes(photos) != before
    u = undo.undo(cat)
    assert u.runs == [rep.run_id] and len(u.restored) == 3 and len(u.deleted) == 1
    assert hashes(photos) == before
    assert {r["write_status"] for r in cat.rows("SELECT write_status FROM photos")} == {"undone"}
    rep2, _ = _scan([photos], cat, None)  # an undone decision is not silently written again
    assert rep2.counts["unchanged"] == 4 and hashes(photos) == before


def test_a_broken_gallery_stops_the_scan_before_anything_is_decided(tmp_path, cat, bundle):
    """The scan loads the bundle's gallery with the model, in the warm-up thread: a damaged gallery.npz still
    stops the run with the BundleError, and no photo is marked done."""
    broken = tmp_path / "bundle"
    shutil.copytree(bundle.path, broken)
    (broken / "gallery.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        shutil.copy(camera_file(JPG), photos / f"DSC_{i:04d}.JPG")
    before = hashes(photos)
    with pytest.raises(BundleError, match="gallery"):
        scan([str(photos)], catalog=cat, workers=2, model_dir=broken)
    assert cat.rows("SELECT path FROM photos WHERE status IN ('tagged', 'unknown')") == []
    assert hashes(photos) == before


def test_catalog_from_before_xxh3_is_migrated_and_its_sha256_undo_records_still_restore(tmp_path, rec0):
    """A schema 1 catalog (sha256 columns, SHA-256 values) opens with its columns renamed and its values kept; the
    undo records it holds are verified with SHA-256 and restore byte-exact."""
    import hashlib
    import sqlite3

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (JPG, "canon_5d3__K6A7946.JPG"):
        shutil.copy(camera_file(name), photos / name)
    originals = {p: p.read_bytes() for p in photos.iterdir()}
    db = tmp_path / "old.db"
    cat = open_catalog(db)
    rep, _ = _scan([photos], cat, rec0)
    assert rep.counts["written"] == 2
    cat.close()

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    # Make it what ltag wrote before: old column names, SHA-256 values, user_version 1.
    conn = sqlite3.connect(db)
    for p, before in originals.items():
        now = p.read_bytes()
        conn.execute("UPDATE photos SET content_hash = ? WHERE path = ?", (sha(now), str(p)))
        conn.execute("UPDATE changes SET before_hash = ?, after_hash = ? WHERE path = ?", (sha(before), sha(now), str(p)))
    for table, new, old in (("photos", "content_hash", "sha256"), ("changes", "before_hash", "before_sha256"),
                            ("changes", "after_hash", "after_sha256")):
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    cat = open_catalog(db)
    cols = {r[1] for r in cat.conn.execute("PRAGMA table_info(photos)")}
    assert "content_hash" in cols and "sha256" not in cols
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == 2
    ch = cat.rows("SELECT before_hash, after_hash FROM changes")
    assert len(ch) == 2 and all(len(c["before_hash"]) == 64 for c in ch)  # the old values, kept
    rep2, _ = _scan([photos], cat, None)
    assert rep2.counts["unchanged"] == 2  # unchanged files are not hashed again
    u = undo.undo(cat, run_id=rep.run_id)
    assert len(u.restored) == 2, u
    assert {p: p.read_bytes() for p in photos.iterdir()} == originals
    # the restored rows carry the new hash
    assert {r["content_hash"] for r in cat.rows("SELECT content_hash FROM photos")} == {
        fsutil.content_hash(b) for b in originals.values()}
    cat.close()


@needs_exiftool
def test_landmark_photos_are_recognised(tmp_path, cat, bundle):
    """With the bundle's own threshold, photos of the bundle's landmarks get tagged (and only ltag's keywords)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    srcs = landmark_photos(6)
    for i, src in enumerate(srcs):
        shutil.copyfile(src, photos / f"IMG_{i:04d}.jpg")  # the shared files are read-only
    rep, res = _scan([photos], cat, None)
    assert rep.model_loaded and rep.counts["failed"] == 0
    assert rep.counts["tagged"] >= 1, {n: (r.landmark, r.confidence) for n, r in res.items()}
    for n, r in res.items():
        kw = exif_keywords(photos / n)["hier"]
        assert (f"Landmarks|{r.landmark}" in kw) == (r.status == "tagged")


@needs_exiftool
def test_gps_places_keywords_and_iptc_location(tmp_path, cat, bundle):
    """A GPS-tagged photo gets place keywords even when no landmark is recognised; --iptc-location fills the
    empty location fields; (0, 0) GPS gives no place."""
    from conftest import camera_sample

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(camera_sample("jpeg/exifsamples_gps_DSCN0010.jpg"), photos / "gps.jpg")
    shutil.copyfile(camera_sample("jpeg/mei_Samsung_GT-I9000.jpg"), photos / "null_island.jpg")
    rep, res = _scan([photos], cat, None, iptc_location=True, threshold=1.0)
    g = res["gps.jpg"]
    assert g.status == "unknown" and g.places == ["Italy", "Tuscany", "Arezzo"]
    kw = exif_keywords(photos / "gps.jpg")
    assert kw["subject"] == ["Italy", "Tuscany", "Arezzo"] and kw["hier"] == ["Places|Italy|Tuscany|Arezzo"]
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-IPTC:City", "-IPTC:Country-PrimaryLocationName",
                          "-XMP-photoshop:City", str(photos / "gps.jpg")], capture_output=True, text=True, check=True)
    loc = json.loads(out.stdout)[0]
    assert loc["XMP-photoshop:City"] == "Arezzo" and loc["IPTC:Country-PrimaryLocationName"] == "Italy"
    assert res["null_island.jpg"].places == [] and res["null_island.jpg"].write_status == "none"
    row = cat.photo_by_path(str(photos / "gps.jpg"))
    assert (row["country"], row["city"]) == ("Italy", "Arezzo") and abs(row["gps_lat"] - 43.47) < 0.1


def test_photos_embedded_one_by_one_beside_the_decoders_decide_as_a_batch_does(tmp_path, bundle, monkeypatch):
    """With decoding workers, each photo is embedded as it arrives (one per onnxruntime call); in-process decoding
    embeds a batch at once. Both give the same embeddings, landmarks and confidences."""
    import numpy as np

    from landmark_tagger.recognizer import Recognizer

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, src in enumerate(landmark_photos(6)):
        shutil.copyfile(src, photos / f"IMG_{i:04d}.jpg")
    shutil.copyfile(camera_file(JPG), photos / JPG)
    calls: list[int] = []
    real_embed = Recognizer.embed

    def spy(self, arrays):
        calls.append(len(arrays))
        return real_embed(self, arrays)

    monkeypatch.setattr(Recognizer, "embed", spy)
    out = {}
    for workers in (2, 1):
        calls.clear()
        c = open_catalog(tmp_path / f"w{workers}.db")
        rep = scan([str(photos)], catalog=c, model_dir=MODEL, write=False, workers=workers, sequence=False)
        assert rep.counts["failed"] == 0 and rep.embedded == 7
        assert calls == ([1] * 7 if workers == 2 else [7])
        rows = c.conn.execute("SELECT p.path, p.landmark, p.confidence, e.embedding FROM photos p "
                              "JOIN embeddings e ON e.photo_id = p.id ORDER BY p.path").fetchall()
        out[workers] = {Path(p).name: (lm, conf, np.frombuffer(e, np.float32)) for p, lm, conf, e in rows}
        c.close()
    assert out[2].keys() == out[1].keys() and len(out[2]) == 7
    for name, (lm, conf, emb) in out[2].items():
        lm1, conf1, emb1 = out[1][name]
        assert lm == lm1 and conf == pytest.approx(conf1, abs=1e-4), name
        assert np.allclose(emb, emb1, atol=1e-4), name
