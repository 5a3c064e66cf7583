"""writer + undo on real camera files, read back by exiftool: merge, ownership, sidecars in both styles,
read-only by permission bits, pixel data unchanged, byte-exact undo and its refusal on a file edited since."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import camera_file

from landmark_tagger import fsutil, metadata, undo
from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import UndoError
from landmark_tagger.writer import Writer, apply_delta, encode_delta, sidecar_for

EXIFTOOL = shutil.which("exiftool") or "/usr/bin/exiftool"
pytestmark = pytest.mark.skipif(not os.path.exists(EXIFTOOL), reason="exiftool not installed")

JPG = "nikon_d90_DSC_0003.JPG"
RAW = "sony_a330_truncated_100k.arw"
EIFFEL = (["Eiffel Tower", "France"], ["Landmarks|Eiffel Tower", "Places|France"])
LOUVRE = (["Louvre", "France"], ["Landmarks|Louvre", "Places|France"])


def exif_keywords(path) -> dict[str, list[str]]:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", "-IPTC:Keywords", "-XMP-dc:Subject",
                          "-XMP-lr:HierarchicalSubject", str(path)], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)[0]

    def lst(k):
        v = d.get(k, [])
        return [str(x) for x in (v if isinstance(v, list) else [v])]

    return {"iptc": lst("IPTC:Keywords"), "subject": lst("XMP-dc:Subject"), "hier": lst("XMP-lr:HierarchicalSubject")}


def image_data(path) -> bytes:
    data = open(path, "rb").read()
    return data[metadata.jpeg_header_end(data):]


@pytest.fixture()
def cat(tmp_path):
    c = open_catalog(tmp_path / "db" / "catalog.db")
    yield c
    c.close()


def _writer(cat, **kw) -> Writer:
    return Writer(cat, cat.start_run("write", {}), **kw)


def _w(writer, path, kind, kws, owned=(), suppressed=()):
    return writer.write(str(path), kind, kws[0], kws[1], owned_before=list(owned), suppressed_before=list(suppressed),
                        props={"ModelId": "test-model", "Confidence": "0.9100"})


def test_jpeg_in_place_merge_keeps_foreign_keywords_and_pixels(tmp_path, cat):
    p = tmp_path / "DSC_0003.JPG"
    shutil.copy(camera_file(JPG), p)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-Keywords=Family", "-XMP-dc:Subject=Family", str(p)],
                   check=True)
    before = p.read_bytes()
    out = _w(_writer(cat), p, "jpeg", EIFFEL)
    assert out.status == "written", out.error
    kw = exif_keywords(p)
    assert kw["iptc"] == ["Family", "Eiffel Tower", "France"]
    assert kw["subject"] == ["Family", "Eiffel Tower", "France"]
    assert kw["hier"] == ["Landmarks|Eiffel Tower", "Places|France"]
    assert image_data(p) == before[metadata.jpeg_header_end(before):]  # compressed pixel data byte-identical
    ch = cat.rows("SELECT * FROM changes")
    assert [(c["kind"], c["state"]) for c in ch] == [("jpeg-delta", "applied")]
    assert len(ch[0]["undo"]) < 8192, "the undo record holds only what changed"
    assert ch[0]["before_hash"] == fsutil.content_hash(before)
    assert ch[0]["after_hash"] == fsutil.content_hash_file(p)
    # idempotent: the same decision again changes nothing
    again = _w(_writer(cat), p, "jpeg", EIFFEL, owned=out.owned)
    assert again.status == "unchanged"
    assert exif_keywords(p)["iptc"] == ["Family", "Eiffel Tower", "France"]


def test_redecision_replaces_only_ltags_keywords_and_deleted_stays_deleted(tmp_path, cat):
    p = tmp_path / "a.jpg"
    shutil.copy(camera_file(JPG), p)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-Keywords=France", "-XMP-dc:Subject=France",
                    "-XMP-dc:Subject=Holiday", "-Keywords=Holiday", str(p)], check=True)
    o1 = _w(_writer(cat), p, "jpeg", EIFFEL)
    assert "France" not in o1.owned  # already there from the user: not claimed
    o2 = _w(_writer(cat), p, "jpeg", LOUVRE, owned=o1.owned)
    kw = exif_keywords(p)
    assert kw["subject"] == ["France", "Holiday", "Louvre"]
    assert kw["hier"] == ["Places|France", "Landmarks|Louvre"]
    # the user deletes ltag's "Louvre"; a later decision does not add it again
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-Keywords-=Louvre", "-XMP-dc:Subject-=Louvre", str(p)],
                   check=True)
    o3 = _w(_writer(cat), p, "jpeg", LOUVRE, owned=o2.owned)
    assert "Louvre" in o3.suppressed
    assert "Louvre" not in exif_keywords(p)["subject"]
    assert "Landmarks|Louvre" in exif_keywords(p)["hier"]


@pytest.mark.parametrize("style,name", [("adobe", "DSC_0001.xmp"), ("darktable", "DSC_0001.ARW.xmp")])
def test_raw_gets_a_new_sidecar_never_written(tmp_path, cat, style, name):
    raw = tmp_path / "DSC_0001.ARW"
    shutil.copy(camera_file(RAW), raw)
    raw_sha = fsutil.sha256_file(raw)
    out = _w(_writer(cat, sidecar_style=style), raw, "raw", EIFFEL)
    assert out.status == "written" and out.target == str(tmp_path / name)
    assert fsutil.sha256_file(raw) == raw_sha
    kw = exif_keywords(tmp_path / name)
    assert kw["subject"] == EIFFEL[0] and kw["hier"] == EIFFEL[1]
    assert [c["kind"] for c in cat.rows("SELECT kind FROM changes")] == ["file-created"]


DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="3"
   darktable:history_end="2">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>darktable|format|arw</rdf:li>
     <rdf:li>Family</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="0000000000000000"/>
     <rdf:li darktable:operation="colorin" darktable:enabled="1" darktable:params="gz12eJxjZBgFo2AU0AsAAAQQAAE="/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_existing_sidecar_of_other_style_is_updated_in_place(tmp_path, cat):
    raw = tmp_path / "DSC_0001.ARW"
    shutil.copy(camera_file(RAW), raw)
    side = tmp_path / "DSC_0001.ARW.xmp"  # darktable's, while the default style is adobe
    side.write_text(DARKTABLE_SIDECAR)
    old = side.read_bytes()
    before_tags = _other_xmp(side)
    assert before_tags["XMP-darktable:History_end"] == 2 and before_tags["XMP-xmp:Rating"] == 3
    assert sidecar_for(str(raw), "adobe") == str(side)
    out = _w(_writer(cat), raw, "raw", EIFFEL)
    assert out.status == "written" and out.target == str(side)
    assert not (tmp_path / "DSC_0001.xmp").exists()
    kw = exif_keywords(side)
    assert kw["subject"] == ["darktable|format|arw", "Family", "Eiffel Tower", "France"]
    assert _other_xmp(side) == before_tags  # darktable's history, rating etc. read the same
    rep = undo.undo(cat)
    assert rep.restored == [str(side)] and side.read_bytes() == old


def _other_xmp(path):
    """Every XMP tag exiftool reads except the keyword fields ltag owns."""
    d = json.loads(subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-struct", "-XMP:all", str(path)],
                                  capture_output=True, text=True, check=True).stdout)[0]
    return {k: v for k, v in d.items() if k not in ("SourceFile", "XMP-dc:Subject", "XMP-lr:HierarchicalSubject")
            and not k.startswith("XMP-ltag:")}


def test_sidecar_only_leaves_jpeg_untouched(tmp_path, cat):
    p = tmp_path / "IMG_1.JPG"
    shutil.copy(camera_file(JPG), p)
    sha = fsutil.sha256_file(p)
    out = _w(_writer(cat, sidecar_only=True), p, "jpeg", EIFFEL)
    assert out.status == "written" and out.target == str(tmp_path / "IMG_1.xmp")
    assert fsutil.sha256_file(p) == sha
    assert exif_keywords(tmp_path / "IMG_1.xmp")["subject"] == EIFFEL[0]


def test_read_only_by_permission_bits_is_reported_not_written(tmp_path, cat):
    p = tmp_path / "ro.jpg"
    shutil.copy(camera_file(JPG), p)
    os.chmod(p, 0o444)
    sha = fsutil.sha256_file(p)
    out = _w(_writer(cat), p, "jpeg", EIFFEL)
    assert out.status == "readonly" and "read-only" in out.error
    assert out.write_status == "readonly"
    assert fsutil.sha256_file(p) == sha
    assert cat.rows("SELECT * FROM changes") == []


def test_a_write_that_did_not_happen_keeps_ownership_as_it_was(tmp_path, cat):
    """A read-only photo's outcome describes the file as it stays: ownership as before (not the planned lists: the
    catalog would then own keywords the file never got, and the next write would suppress them as deleted by the
    user), and the file's own keywords. Once writable, the same decision writes every keyword."""
    p = tmp_path / "ro.jpg"
    shutil.copy(camera_file(JPG), p)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Family", str(p)], check=True)
    os.chmod(p, 0o444)
    out = _w(_writer(cat), p, "jpeg", EIFFEL, owned=["Old Tag"], suppressed=["Gone"])
    assert out.status == "readonly"
    assert out.owned == ["Old Tag"] and out.suppressed == ["Gone"]
    assert out.flat == ["Family"] and out.hier == []
    os.chmod(p, 0o644)
    out = _w(_writer(cat), p, "jpeg", EIFFEL, owned=out.owned, suppressed=out.suppressed)
    assert out.status == "written" and "Gone" in out.suppressed
    assert set(EIFFEL[0]) <= set(exif_keywords(p)["subject"]) and "Family" in exif_keywords(p)["subject"]
    assert set(EIFFEL[1]) <= set(exif_keywords(p)["hier"])


def test_keep_mtime_and_mode(tmp_path, cat):
    p = tmp_path / "a.jpg"
    shutil.copy(camera_file(JPG), p)
    os.chmod(p, 0o640)
    os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    _w(_writer(cat, keep_mtime=True), p, "jpeg", EIFFEL)
    st = p.stat()
    assert st.st_mtime_ns == 1_600_000_000_000_000_000 and (st.st_mode & 0o777) == 0o640
    _w(_writer(cat), p, "jpeg", LOUVRE, owned=["Eiffel Tower", "Landmarks|Eiffel Tower"])
    assert p.stat().st_mtime_ns != 1_600_000_000_000_000_000  # default: mtime changes like any edit


def test_undo_of_a_keep_mtime_run_keeps_the_mtime(tmp_path, cat):
    """--keep-mtime: the undo restores the bytes and the file keeps its original mtime; a plain run's undo is an
    edit like any other (new mtime, so backups notice it)."""
    t0 = 1_600_000_000_000_000_000
    kept, plain = tmp_path / "kept.jpg", tmp_path / "plain.jpg"
    for p in (kept, plain):
        shutil.copy(camera_file(JPG), p)
        os.utime(p, ns=(t0, t0))
    before = kept.read_bytes()
    run = cat.start_run("scan", {"keep_mtime": True})
    assert _w(Writer(cat, run, keep_mtime=True), kept, "jpeg", EIFFEL).status == "written"
    assert kept.stat().st_mtime_ns == t0
    undo.undo(cat, run_id=run)
    assert kept.read_bytes() == before and kept.stat().st_mtime_ns == t0
    run = cat.start_run("scan", {})
    assert _w(Writer(cat, run), plain, "jpeg", EIFFEL).status == "written"
    undo.undo(cat, run_id=run)
    assert plain.read_bytes() == before and plain.stat().st_mtime_ns != t0


def test_undo_is_byte_exact_across_runs(tmp_path, cat):
    files = []
    for name in ("nikon_d90_DSC_0003.JPG", "canon_5d3__K6A7945.JPG", "nikon_e995_DSCN1325.JPG"):
        shutil.copy(camera_file(name), tmp_path / name)
        files.append(tmp_path / name)
    shutil.copy(camera_file(RAW), tmp_path / "nikon_d90_DSC_0003.ARW")
    orig = {str(f): fsutil.sha256_file(f) for f in files}
    w1 = _writer(cat)
    owned = {}
    for f in files:
        owned[f] = _w(w1, f, "jpeg", EIFFEL).owned
    _w(w1, tmp_path / "nikon_d90_DSC_0003.ARW", "raw", EIFFEL)
    cat.finish_run(w1.run_id)
    mid = {str(f): fsutil.sha256_file(f) for f in files}
    w2 = _writer(cat)
    for f in files:
        _w(w2, f, "jpeg", LOUVRE, owned=owned[f])
    cat.finish_run(w2.run_id)
    rep = undo.undo(cat)  # the most recent run only
    assert rep.runs == [w2.run_id]
    assert {str(f): fsutil.sha256_file(f) for f in files} == mid
    rep = undo.undo(cat)
    assert rep.runs == [w1.run_id]
    assert {str(f): fsutil.sha256_file(f) for f in files} == orig
    assert rep.deleted == [str(tmp_path / "nikon_d90_DSC_0003.xmp")]
    assert not (tmp_path / "nikon_d90_DSC_0003.xmp").exists()
    with pytest.raises(UndoError):
        undo.undo(cat)


def test_undo_refuses_a_file_edited_since(tmp_path, cat):
    p = tmp_path / "a.jpg"
    shutil.copy(camera_file(JPG), p)
    orig = fsutil.sha256_file(p)
    w = _writer(cat)
    _w(w, p, "jpeg", EIFFEL)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-Keywords+=Edited", str(p)], check=True)
    edited = fsutil.sha256_file(p)
    rep = undo.undo(cat)
    assert rep.skipped and "changed by another program" in rep.skipped[0][1]
    assert fsutil.sha256_file(p) == edited
    rep = undo.undo(cat, run_id=w.run_id, force=True)
    # --force restores only when that is byte-exact; otherwise it reports and leaves the file alone
    assert fsutil.sha256_file(p) in (orig, edited)
    assert (fsutil.sha256_file(p) == orig) == bool(rep.restored)
    # image data changed since: never "restored" into a broken mix
    p2 = tmp_path / "b.jpg"
    shutil.copy(camera_file(JPG), p2)
    w2 = _writer(cat)
    _w(w2, p2, "jpeg", EIFFEL)
    with open(p2, "ab") as f:
        f.write(b"trailing bytes another tool appended")
    after = fsutil.sha256_file(p2)
    rep = undo.undo(cat, run_id=w2.run_id, force=True)
    assert rep.failed and fsutil.sha256_file(p2) == after


def test_pending_change_is_resolved_by_hash(tmp_path, cat):
    """A kill between recording the change and replacing the file: the next run settles it by hash."""
    p = tmp_path / "a.jpg"
    shutil.copy(camera_file(JPG), p)
    w = _writer(cat)
    _w(w, p, "jpeg", EIFFEL)
    cat.conn.execute("UPDATE changes SET state = 'pending'")
    cat.conn.execute("UPDATE runs SET status = 'running', args = '{\"pid\": 999999999}'")
    assert undo.resolve_pending(cat) == 1
    assert cat.rows("SELECT state FROM changes") == [{"state": "applied"}]
    assert cat.rows("SELECT status FROM runs") == [{"status": "interrupted"}]


def test_delta_roundtrip_is_small():
    old = camera_file(JPG).read_bytes()
    from landmark_tagger.keywords import KeywordEdit

    new = metadata.rewrite_jpeg(old, KeywordEdit(add_flat=["Eiffel Tower"], add_hier=["Landmarks|Eiffel Tower"]))
    rec = encode_delta(old, new)
    assert apply_delta(new, rec) == old
    assert len(rec) < 4096 < len(old[: metadata.jpeg_header_end(old)])


def test_delta_matches_a_naive_diff(monkeypatch):
    """encode_delta/apply_delta on random edits, with tiny chunks so that every search path runs."""
    import os.path
    import random

    import landmark_tagger.writer as W

    monkeypatch.setattr(W, "_CHUNK", 4)
    rng = random.Random(1)
    for _ in range(1500):
        a = bytes(rng.randrange(2) for _ in range(rng.randrange(0, 80)))
        b = bytearray(a)
        for _ in range(rng.randrange(0, 3)):
            if b and rng.random() < 0.5:
                b[rng.randrange(len(b))] = rng.randrange(2)
            else:
                pos = rng.randrange(len(b) + 1)
                b[pos:pos] = bytes(rng.randrange(2) for _ in range(rng.randrange(4)))
        b = bytes(b)
        assert W.apply_delta(b, W.encode_delta(a, b)) == a
        p = len(os.path.commonprefix([a, b]))
        assert W._common_prefix(a, b) == p
        limit = min(len(a), len(b)) - p
        assert W._common_suffix(a, b, limit) == min(len(os.path.commonprefix([a[::-1], b[::-1]])), limit)


def test_confidence_alone_does_not_rewrite_the_file(tmp_path, cat):
    """Re-deciding the same landmark with a slightly different confidence (a rescan) leaves the file byte-identical;
    a real change (another landmark) writes and refreshes ltag:Confidence with it."""
    p = tmp_path / "DSC_0003.JPG"
    shutil.copy(camera_file(JPG), p)
    w = _writer(cat)
    first = w.write(str(p), "jpeg", *EIFFEL, owned_before=[], suppressed_before=[],
                    props={"ModelId": "test-model", "Landmark": "Eiffel Tower", "Confidence": "0.9100"})
    assert first.status == "written", first.error
    sha = fsutil.sha256_file(p)
    again = _writer(cat).write(str(p), "jpeg", *EIFFEL, owned_before=first.owned, suppressed_before=[],
                               props={"ModelId": "test-model", "Landmark": "Eiffel Tower", "Confidence": "0.9137"})
    assert again.status == "unchanged"
    assert fsutil.sha256_file(p) == sha
    assert metadata.read_keywords(p).ltag["Confidence"] == "0.9100"
    assert len(cat.rows("SELECT * FROM changes")) == 1
    # another property that matters (the landmark) still rewrites, and the confidence comes along
    moved = _writer(cat).write(str(p), "jpeg", *LOUVRE, owned_before=first.owned, suppressed_before=[],
                               props={"ModelId": "test-model", "Landmark": "Louvre", "Confidence": "0.8800"})
    assert moved.status == "written", moved.error
    st = metadata.read_keywords(p)
    assert (st.ltag["Landmark"], st.ltag["Confidence"]) == ("Louvre", "0.8800")
    assert fsutil.content_hash_file(p) == moved.after_hash


def test_head_delta_equals_the_whole_file_delta(monkeypatch):
    """The writer's undo record, computed from the JPEG heads alone, is the record of the whole files."""
    import random

    import landmark_tagger.writer as W

    old = camera_file(JPG).read_bytes()
    from landmark_tagger.keywords import KeywordEdit

    with open(camera_file(JPG), "rb") as f:
        head = metadata.read_jpeg_head(f)
    new_head = metadata.rewrite_jpeg(head, KeywordEdit(add_flat=["Louvre"], add_hier=["Landmarks|Louvre"]))
    tail = old[len(head):]
    rec = W.encode_head_delta(head, new_head, len(tail))
    assert rec == encode_delta(old, new_head + tail)
    assert apply_delta(new_head + tail, rec) == old
    monkeypatch.setattr(W, "_CHUNK", 4)
    rng = random.Random(2)
    for _ in range(500):
        a = bytes(rng.randrange(2) for _ in range(rng.randrange(0, 40)))
        b = bytearray(a)
        pos = rng.randrange(len(b) + 1)
        b[pos:pos] = bytes(rng.randrange(2) for _ in range(rng.randrange(1, 4)))
        t = bytes(rng.randrange(2) for _ in range(rng.randrange(0, 10)))
        assert W.apply_delta(bytes(b) + t, W.encode_head_delta(a, bytes(b), len(t))) == a + t


def test_jpeg_write_hashes_and_dry_run_are_of_the_whole_file(tmp_path, cat):
    p = tmp_path / "DSC_0003.JPG"
    shutil.copy(camera_file(JPG), p)
    before = p.read_bytes()
    ops = fsutil.NoOpFileOps()
    dry = _w(_writer(cat, fileops=ops), p, "jpeg", EIFFEL)
    assert dry.status == "dry-run" and p.read_bytes() == before
    assert cat.rows("SELECT * FROM changes") == []
    out = _w(_writer(cat), p, "jpeg", EIFFEL)
    assert out.status == "written", out.error
    after = p.read_bytes()
    assert dry.after_hash == out.after_hash == fsutil.content_hash(after)
    assert ops.log == [("write", str(p), len(after))]
    ch = cat.rows("SELECT * FROM changes")[0]
    assert (ch["before_hash"], ch["before_size"]) == (fsutil.content_hash(before), len(before))
    assert image_data(p) == before[metadata.jpeg_header_end(before):]


def test_known_hash_is_used_only_while_the_file_keeps_its_stat(tmp_path, cat, monkeypatch):
    """The scan passes the worker's (size, mtime, content hash): reused for the undo record only while the file
    still has that size and mtime; otherwise the file is hashed again."""

    p = tmp_path / "DSC_0003.JPG"
    shutil.copy(camera_file(JPG), p)
    before = p.read_bytes()
    real = fsutil.content_hash(before)
    st = p.stat()
    hashed: list[int] = []
    orig_hasher = fsutil.hasher_for

    class Counting:
        def __init__(self, recorded):
            self.h = orig_hasher(recorded)
            hashed.append(1)

        def update(self, data):
            self.h.update(data)

        def hexdigest(self):
            return self.h.hexdigest()

    monkeypatch.setattr(fsutil, "hasher_for", Counting)
    w = _writer(cat)
    out = w.write(str(p), "jpeg", *EIFFEL, owned_before=[], suppressed_before=[],
                  known=(st.st_size, st.st_mtime_ns, real))
    assert out.status == "written" and len(hashed) == 1  # only the new content was hashed
    ch = cat.rows("SELECT * FROM changes")[0]
    assert ch["before_hash"] == real and ch["after_hash"] == fsutil.content_hash(p.read_bytes())
    undo.undo(cat)
    assert fsutil.content_hash(p.read_bytes()) == real

    # A stale stat (the file changed since the caller hashed it): the "known" hash is ignored.
    hashed.clear()
    st = p.stat()
    out = _writer(cat).write(str(p), "jpeg", *EIFFEL, owned_before=[], suppressed_before=[],
                             known=(st.st_size, st.st_mtime_ns - 1, "0" * 32))
    assert out.status == "written" and len(hashed) == 2
    ch = cat.rows("SELECT * FROM changes ORDER BY id DESC")[0]
    assert ch["before_hash"] == real


def test_learn_runs_are_in_the_one_undo_history(tmp_path, cat):
    """A run of kind 'learn' (a correction) that changed a file is listed with scans, newest first, and undone."""
    p = tmp_path / "DSC_0003.JPG"
    shutil.copy(camera_file(JPG), p)
    original = p.read_bytes()
    scan_run = cat.start_run("scan", {})
    first = _w(Writer(cat, scan_run), p, "jpeg", EIFFEL)
    assert first.status == "written", first.error
    after_scan = p.read_bytes()
    cat.start_run("learn", {"name": "nothing written"})  # a learn run without file changes is not listed
    learn_run = cat.start_run("learn", {"correct": str(p)})
    fixed = _w(Writer(cat, learn_run), p, "jpeg", LOUVRE, owned=first.owned)
    assert fixed.status == "written", fixed.error
    assert [(r["id"], r["kind"]) for r in undo.history(cat)] == [(learn_run, "learn"), (scan_run, "scan")]
    rep = undo.undo(cat)
    assert rep.runs == [learn_run]
    assert p.read_bytes() == after_scan
    assert [r["id"] for r in undo.history(cat)] == [scan_run]
    undo.undo(cat)
    assert p.read_bytes() == original


def test_pending_change_of_a_killed_learn_run_is_resolved(tmp_path, cat):
    """A correction run (kind 'learn') killed after the replace: its change is settled by hash like a scan's."""
    p = tmp_path / "a.jpg"
    shutil.copy(camera_file(JPG), p)
    run = cat.start_run("learn", {"pid": 999999999})
    _w(Writer(cat, run), p, "jpeg", EIFFEL)
    cat.conn.execute("UPDATE changes SET state = 'pending'")
    cat.conn.execute("UPDATE runs SET status = 'running'")
    assert undo.resolve_pending(cat) == 1
    assert cat.rows("SELECT state FROM changes") == [{"state": "applied"}]
    assert cat.rows("SELECT kind, status FROM runs") == [{"kind": "learn", "status": "interrupted"}]
