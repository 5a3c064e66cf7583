"""Sequence consensus inside a plain ``ltag scan`` (issue 6): confident neighbours shot minutes apart lift a
photo that is just below the threshold; ``--no-sequence`` leaves it to its own confidence; a photo hours away
is not lifted. Uses the tiny colour bundle (tests/fixtures/tiny_bundle), so the confidences are exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from landmark_tagger.bundle import load_bundle
from landmark_tagger.catalog import open_catalog
from landmark_tagger.preprocess import prepare
from landmark_tagger.recognizer import Recognizer
from landmark_tagger.scan import scan

TINY = Path(__file__).parent / "fixtures" / "tiny_bundle"


def _jpeg(path: Path, rgb: tuple[int, int, int], taken: str) -> None:
    exif = Image.Exif()
    exif[0x0132] = taken  # DateTime
    exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
    Image.new("RGB", (64, 48), rgb).save(path, quality=95, exif=exif.tobytes())


def _sweep(lo: float, hi: float) -> tuple[tuple[int, int, int], float]:
    """A bluish grey whose own confidence for Blue Mosque is between ``lo`` and ``hi`` below the threshold."""
    from landmark_tagger.retag import candidates

    b = load_bundle(TINY)
    rec = Recognizer(b)
    cols = [(40 + k, 40 + k, 200) for k in range(0, 160, 2)]
    embs, gens = rec.embed([prepare(Image.new("RGB", (64, 48), c), b.preprocess) for c in cols])
    for c, d in zip(cols, candidates(rec, embs, gens), strict=True):
        if d.label == "blue_mosque" and lo <= b.threshold - d.confidence <= hi:
            return c, b.threshold
    raise AssertionError("no colour of the sweep is just below the threshold")


@pytest.fixture(scope="module")
def dull_blue():
    return _sweep(0.05, 0.15)


def _burst(folder: Path, dull: tuple[int, int, int]) -> None:
    folder.mkdir()
    for i, sec in enumerate((0, 20, 60, 80)):
        _jpeg(folder / f"DSC_{i:04d}.JPG", (10, 10, 250), f"2024:05:01 10:00:{sec:02d}")
    _jpeg(folder / "DSC_0010.JPG", dull, "2024:05:01 10:00:40")  # inside the burst
    _jpeg(folder / "DSC_0020.JPG", dull, "2024:05:01 16:00:00")  # hours later, alone


@pytest.mark.parametrize("sequence", [True, False])
def test_plain_scan_applies_sequence_consensus(tmp_path, dull_blue, sequence):
    dull, threshold = dull_blue
    _burst(tmp_path / "photos", dull)
    cat = open_catalog(tmp_path / "cat.db")
    rep = scan([tmp_path / "photos"], catalog=cat, model_dir=TINY, write=False, workers=1, sequence=sequence)
    rows = {r["name"]: r for r in cat.rows("SELECT name, landmark, confidence, own_confidence, decided_by FROM photos")}
    inside, alone = rows["DSC_0010.JPG"], rows["DSC_0020.JPG"]
    assert inside["own_confidence"] < threshold and alone["own_confidence"] < threshold
    assert alone["landmark"] is None and alone["confidence"] == pytest.approx(alone["own_confidence"])
    for i in range(4):
        assert rows[f"DSC_{i:04d}.JPG"]["landmark"] == "Blue Mosque"
    if sequence:
        assert inside["landmark"] == "Blue Mosque" and inside["decided_by"] == "sequence"
        assert inside["confidence"] >= threshold > inside["own_confidence"]
        assert rep.counts["by_sequence"] == 1
    else:
        assert inside["landmark"] is None and inside["decided_by"] != "sequence"
        assert inside["confidence"] == pytest.approx(inside["own_confidence"])
        assert rep.counts["by_sequence"] == 0
    cat.close()


def test_consensus_reaches_across_batches(tmp_path):
    """The scan decides a batch only once the next one is inferred. Here the dull photo sorts first and comes
    with one neighbour in its batch (batch_size 2) and two in the next: one neighbour alone lifts it by ~0.12,
    three by ~0.22, and it is 0.13-0.20 below the threshold, so it is tagged only if the next batch votes."""
    from landmark_tagger.scan import Scanner

    dull, threshold = _sweep(0.13, 0.20)
    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "DSC_0000.JPG", dull, "2024:05:01 10:00:00")
    for i, sec in enumerate((20, 40, 60), start=1):
        _jpeg(folder / f"DSC_{i:04d}.JPG", (10, 10, 250), f"2024:05:01 10:00:{sec:02d}")
    cat = open_catalog(tmp_path / "cat.db")
    rep = Scanner(cat, model_dir=TINY, write=False, workers=1, batch_size=2, sequence=True).run([folder])
    row = cat.rows("SELECT landmark, confidence, own_confidence, decided_by FROM photos WHERE name = 'DSC_0000.JPG'")[0]
    assert row["own_confidence"] < threshold - 0.12
    assert row["landmark"] == "Blue Mosque" and row["decided_by"] == "sequence" and row["confidence"] >= threshold
    assert rep.counts["tagged"] == 4 and rep.counts["by_sequence"] == 1
    cat.close()
