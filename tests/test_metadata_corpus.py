"""Metadata fidelity on a corpus of many makers' and programs' files (issue 7, Proof).

exiftool is the oracle: every tag other than the keyword fields ltag owns reads the same after ltag
writes keywords (twice: a first decision, then a re-decision that replaces ltag's own keywords), no new
``-validate`` warning appears, image data is byte-identical, and exiftool reads ltag's keywords back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from corpus.build import build_corpus
from corpus.compare import check_fidelity, exiftool_path, keywords, read_tags

from landmark_tagger import metadata
from landmark_tagger.errors import MetadataError
from landmark_tagger.keywords import plan

pytestmark = [pytest.mark.exiftool, pytest.mark.skipif(exiftool_path() is None, reason="exiftool not installed")]

LONG = "Chhatrapati Shivaji Maharaj Vastu Sangrahalaya — Prince of Wales Museum"  # > 64 bytes in UTF-8
FIRST = (
    ["Taj Mahal", "Agra", "Uttar Pradesh", "India", "Ünïcødé Café", LONG],
    ["Landmarks|Taj Mahal", "Places|India|Uttar Pradesh|Agra"],
    {"Landmark": "Taj Mahal", "Label": "taj_mahal", "Confidence": "0.934", "ModelId": "ltag-test-1"},
)
SECOND = (
    ["Red Fort", "Delhi", "India"],
    ["Landmarks|Red Fort", "Places|India|Delhi"],
    {"Landmark": "Red Fort", "Label": "red_fort", "Confidence": "0.871", "ModelId": "ltag-test-2"},
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _write(path: Path, decision, sidecar: bool) -> None:
    data = path.read_bytes()
    state = metadata.read_sidecar_keywords(data) if sidecar else metadata.read_jpeg_keywords(data)
    flat, hier, props = decision
    p = plan(state, flat, hier)
    p.edit.ltag = dict(props)
    new = metadata.rewrite_sidecar(data, p.edit) if sidecar else metadata.rewrite_jpeg(data, p.edit)
    path.write_bytes(new)


def _apply_twice(sidecar: bool):
    def apply(paths):
        for path in paths:
            _write(path, FIRST, sidecar)
        for path in paths:
            _write(path, SECOND, sidecar)

    return apply


def _assert_reports(reports):
    problems = []
    for r in reports:
        if not r.ok:
            problems.append(
                f"{r.path.name}: changed={r.changed} new_warnings={r.new_warnings} data={r.image_data_same}"
            )
    assert not problems, "\n".join(problems)


def test_corpus_is_broad(corpus):
    assert len(corpus.origins) >= 30, sorted(corpus.origins)
    assert len(corpus.sidecars) >= 10
    assert len(corpus.jpegs) >= 30
    # the corpus really carries what it claims: maker notes, extended XMP, legacy IPTC, MPF, custom namespaces
    tags = read_tags([f.path for f in corpus.jpegs])
    flat = {k for t in tags.values() for k in t}
    for needed in (
        "XMP-xmpNote:HasExtendedXMP",
        "XMP-acme:ShootLocationFloor",
        "Photoshop:IPTCDigest",
        "MPF0:MPFVersion",
        "XMP-darktable:HistoryOperation",
        "XMP-crs:ToneCurvePV2012",
        "XMP-mwg-rs:RegionName",
    ):
        assert needed in flat, needed
    assert any(k.startswith(("Canon:", "Nikon:")) for k in flat)


def test_jpegs_keep_every_other_tag(corpus):
    paths = [f.path for f in corpus.jpegs]
    reports = check_fidelity(paths, _apply_twice(sidecar=False))
    _assert_reports(reports)
    assert sum(r.compared for r in reports) > 5000
    for r in reports:
        kw = keywords(r.after)
        old = keywords(r.before)
        # ltag's second decision is there, its first one is gone, foreign keywords stay
        assert {"Red Fort", "Delhi"} <= set(kw["XMP-dc:Subject"]), r.path.name
        assert {"Red Fort", "Delhi"} <= set(kw["IPTC:Keywords"]), r.path.name
        assert "Landmarks|Red Fort" in kw["XMP-lr:HierarchicalSubject"]
        assert "Taj Mahal" not in kw["XMP-dc:Subject"] + kw["IPTC:Keywords"]
        for field in kw:
            assert set(old[field]) <= set(kw[field]), (r.path.name, field)
        assert r.after.get("XMP-ltag:Landmark") == "Red Fort"
        assert r.after.get("IPTC:CodedCharacterSet", "UTF8") == "UTF8" or not any(
            ord(c) > 127 for k in kw["IPTC:Keywords"] for c in k
        )


def test_sidecars_keep_every_other_tag(corpus):
    paths = [f.path for f in corpus.sidecars]
    reports = check_fidelity(paths, _apply_twice(sidecar=True))
    _assert_reports(reports)
    for r in reports:
        kw = keywords(r.after)
        assert "Red Fort" in kw["XMP-dc:Subject"]
        assert "Places|India|Delhi" in kw["XMP-lr:HierarchicalSubject"]
        assert set(keywords(r.before)["XMP-dc:Subject"]) <= set(kw["XMP-dc:Subject"])


def test_raw_files_are_never_written_and_their_sidecars_are_merged(corpus):
    assert len(corpus.raws) >= 3
    raw_hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.raws}
    sidecars = [p for p in corpus.raws[0].parent.glob("*.xmp")]
    assert {p.name for p in sidecars} >= {"DSC_0002.NEF.xmp", "CRW_0113.xmp"}  # both naming styles
    reports = check_fidelity(sidecars, _apply_twice(sidecar=True))
    _assert_reports(reports)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.raws} == raw_hashes


def test_long_and_non_ascii_keywords_read_back(corpus, tmp_path):
    path = tmp_path / "one.jpg"
    path.write_bytes(next(f for f in corpus.jpegs if f.profile == "legacy_latin1_iptc").path.read_bytes())
    _write(path, FIRST, sidecar=False)
    tags = read_tags([path])[str(path.resolve())]
    kw = keywords(tags)
    assert LONG in kw["XMP-dc:Subject"]  # whole in XMP
    cut = LONG.encode("utf-8")[:64].decode("utf-8", "ignore")
    assert cut in kw["IPTC:Keywords"] and LONG not in kw["IPTC:Keywords"]  # cut at a character boundary in IPTC
    assert "Ünïcødé Café" in kw["IPTC:Keywords"]
    assert {"été", "Montréal"} <= set(kw["IPTC:Keywords"])  # Latin-1 records transcoded, read the same
    assert tags["IPTC:Caption-Abstract"] == "Été à Montréal, façade"
    assert tags["IPTC:CodedCharacterSet"] == "UTF8"


def test_location_fills_only_empty_fields(corpus, tmp_path):
    src = next(f for f in corpus.jpegs if f.profile == "photomechanic").path  # has IPTC City = Roma
    path = tmp_path / "loc.jpg"
    path.write_bytes(src.read_bytes())

    def apply(paths):
        for p in paths:
            edit = metadata.KeywordEdit(add_flat=["Colosseum"], location={"City": "Agra", "Country": "India"})
            p.write_bytes(metadata.rewrite_jpeg(p.read_bytes(), edit))

    (r,) = check_fidelity([path], apply, location=True)
    _assert_reports([r])
    assert r.after["IPTC:City"] == "Roma"  # kept
    assert r.after["XMP-photoshop:City"] == "Rome"  # kept (from the Photo Mechanic packet)
    assert r.after["IPTC:Country-PrimaryLocationName"] == "India"  # was empty: filled


def _safe_apply(path: Path, sidecar: bool) -> None:
    """What the writer does: on a metadata error nothing is written."""
    try:
        _write(path, FIRST, sidecar)
    except MetadataError:
        pass


def test_malformed_are_refused_and_left_alone(corpus):
    assert len(corpus.malformed) >= 8
    for path in corpus.malformed:
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        sidecar = path.suffix == ".xmp"
        edit = metadata.KeywordEdit(add_flat=["Taj Mahal"])
        with pytest.raises(MetadataError):
            if sidecar:
                metadata.rewrite_sidecar(path.read_bytes(), edit)
            else:
                metadata.rewrite_jpeg(path.read_bytes(), edit)
        with pytest.raises(MetadataError):
            metadata.read_keywords(path)
        _safe_apply(path, sidecar)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before, path.name


def test_rescan_with_the_same_decision_changes_no_byte(corpus, tmp_path):
    for f in corpus.jpegs + corpus.sidecars:
        sidecar = f.path.suffix == ".xmp"
        path = tmp_path / f.path.name
        path.write_bytes(f.path.read_bytes())
        _write(path, FIRST, sidecar)
        once = path.read_bytes()
        _write(path, FIRST, sidecar)
        assert path.read_bytes() == once, f.path.name
