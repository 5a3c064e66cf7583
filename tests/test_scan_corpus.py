"""The metadata-fidelity corpus (tests/corpus: 30+ makers' and programs' files, other tools' sidecars, malformed
files) run through the real ``scan`` pipeline: exiftool reads every tag but ltag's keyword fields the same, no new
``-validate`` warning, image data and RAW files byte-identical, malformed files reported and left alone, and
``undo`` restores every file byte for byte."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from corpus.build import build_corpus
from corpus.compare import check_fidelity, exiftool_path, keywords

from landmark_tagger import undo
from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import BundleError
from landmark_tagger.scan import scan

pytestmark = [pytest.mark.exiftool, pytest.mark.skipif(exiftool_path() is None, reason="exiftool not installed")]
MODEL = os.environ.get("LTAG_TEST_MODEL")  # default: the shipped bundle


@pytest.fixture(scope="module")
def rec0():
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.recognizer import Recognizer

    try:
        return Recognizer(load_bundle(MODEL), threshold=0.0)  # every decodable photo gets its best landmark
    except BundleError as e:
        pytest.skip(f"default model bundle not installed: {e}")


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_scan_over_the_corpus_changes_only_keywords_and_undoes_byte_exact(tmp_path, rec0):
    corpus = build_corpus(tmp_path / "corpus")
    root = tmp_path / "corpus"
    targets = [f.path for f in corpus.jpegs] + sorted((root / "raw").glob("*.xmp"))
    raw_before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.raws}
    malformed_before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.malformed}
    before = _hashes(root)
    cat = open_catalog(tmp_path / "catalog.db")
    results = []
    reports_ = []

    def apply(_paths):
        reports_.append(scan([str(root / "jpeg"), str(root / "raw"), str(root / "malformed")], catalog=cat,
                             recognizer=rec0, workers=2, on_result=results.append))

    reports = check_fidelity(targets, apply)
    rep = reports_[0]
    per_file = {Path(r.path).resolve(): r for r in results}
    bad = [f"{r.path.name}: changed={r.changed[:5]} new_warnings={r.new_warnings} data={r.image_data_same}"
           for r in reports if not r.ok]
    assert not bad, "\n".join(bad)
    assert sum(r.compared for r in reports) > 5000
    written = 0
    counted = []
    for r in reports:
        res = per_file.get(r.path)
        if res is None:  # a sidecar beside a RAW: the RAW's result
            photo = next(p for p in corpus.raws if r.path.name.startswith(p.stem + "."))
            res = per_file[photo.resolve()]
            if res.status == "failed":  # a RAW without a usable preview: its sidecar is left alone
                assert before[str(r.path)] == hashlib.sha256(r.path.read_bytes()).hexdigest(), r.path.name
                continue
            assert Path(res.target).resolve() == r.path  # the existing sidecar of either style is the target
        assert res.status == "tagged", (r.path, res)
        assert res.landmark in keywords(r.after)["XMP-dc:Subject"], r.path.name
        assert set(keywords(r.before)["XMP-dc:Subject"]) <= set(keywords(r.after)["XMP-dc:Subject"])
        written += 1
        counted.append(r.path)
    jpeg_reports = [r for r in reports if r.path.suffix.lower() == ".jpg"]
    assert len(jpeg_reports) >= 30 and all(r.path in counted for r in jpeg_reports)
    assert written >= len(jpeg_reports) + 1  # + the existing sidecar of the CRW (the KDC's is created by ltag)
    assert (root / "raw" / "P003913.xmp").exists()
    assert rep.counts["written"] == written + 1
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus.raws} == raw_before
    # malformed files: reported with a reason, not written, never marked done
    for p in corpus.malformed:
        if p.suffix.lower() == ".jpg":  # malformed sidecars have no photo beside them: not scanned
            r = per_file[p.resolve()]
            assert r.status == "failed" and r.error, (p.name, r)
        assert hashlib.sha256(p.read_bytes()).hexdigest() == malformed_before[p], p.name
    u = undo.undo(cat)
    assert u.runs == [rep.run_id] and not u.failed and not u.skipped
    assert _hashes(root) == before
    cat.close()
