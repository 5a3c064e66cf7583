"""Every kind of bad input is a clear per-file error; the batch goes on; nothing is marked done that was not."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from conftest import CAMERA_SAMPLES_DIR, camera_file

from landmark_tagger import fsutil
from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import BundleError
from landmark_tagger.scan import scan

JPG = "nikon_d90_DSC_0003.JPG"
MODEL = os.environ.get("LTAG_TEST_MODEL")  # default: the shipped bundle


@pytest.fixture(scope="module")
def rec0():
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.recognizer import Recognizer

    try:
        return Recognizer(load_bundle(MODEL), threshold=0.0)
    except BundleError as e:
        pytest.skip(f"default model bundle not installed: {e}")


def _make_bad_archive(root: Path) -> dict[str, str]:
    """Writes the bad files; returns name -> expected fragment of the error."""
    good = camera_file(JPG).read_bytes()
    root.mkdir(parents=True, exist_ok=True)
    (root / "good.jpg").write_bytes(good)
    (root / "truncated.jpg").write_bytes(good[: int(len(good) * 0.6)])
    corrupt = bytearray(good)
    mid = len(corrupt) // 2
    corrupt[mid:mid + 2000] = random.Random(1).randbytes(2000)  # garbage inside the entropy-coded data
    (root / "corrupt.jpg").write_bytes(bytes(corrupt))
    (root / "zero.jpg").write_bytes(b"")
    (root / "notes.JPG").write_text("this is not a photo\n")
    shutil.copy(camera_file("nikon_d1_truncated_75k.nef"), root / "nopreview.nef")
    expected = {"truncated.jpg": "truncated", "corrupt.jpg": "corrupt", "zero.jpg": "empty",
                "notes.JPG": "not an image", "nopreview.nef": "RAW"}
    stripped = CAMERA_SAMPLES_DIR / "raw" / "exiftool_Nikon_D70_stripped.nef"
    if stripped.is_file():
        shutil.copy(stripped, root / "stripped.nef")
        expected["stripped.nef"] = "no embedded preview"
    (root / "readonly.jpg").write_bytes(good)
    os.chmod(root / "readonly.jpg", 0o444)
    (root / "unreadable.jpg").write_bytes(good)
    os.chmod(root / "unreadable.jpg", 0o000)
    (root / "locked").mkdir()
    (root / "locked" / "inside.jpg").write_bytes(good)
    os.chmod(root / "locked", 0o000)
    (root / "loop").mkdir()
    os.symlink("..", root / "loop" / "back")
    os.symlink("self.jpg", root / "self.jpg")
    for name in ("Ålesund – fjord.JPG", "東京タワー.jpg", "e\u0301cole\nnew line.jpg"):
        (root / name).write_bytes(good)
    if sys.platform == "linux":
        with open(os.path.join(os.fsencode(root), b"bad\xffname.jpg"), "wb") as f:
            f.write(good)
    return expected


def _unlock(root: Path) -> None:
    for p in (root / "locked", root / "unreadable.jpg", root / "readonly.jpg"):
        if p.exists():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, rec0):
    root = tmp_path / "archive"
    expected = _make_bad_archive(root)
    cat = open_catalog(tmp_path / "catalog.db")
    results = []
    try:
        ro_sha = fsutil.sha256_file(root / "readonly.jpg")
        rep = scan([str(root)], catalog=cat, model_dir=MODEL, recognizer=rec0, workers=2, on_result=results.append)
        by_name = {os.path.basename(r.path): r for r in results}
        # the good files (odd Unicode names included) are tagged and written
        for name in ("good.jpg", "Ålesund – fjord.JPG", "東京タワー.jpg", "e\u0301cole\nnew line.jpg"):
            assert by_name[name].status == "tagged" and by_name[name].write_status == "written", by_name[name]
        for name, fragment in expected.items():
            r = by_name[name]
            assert r.status == "failed" and fragment in r.error, (name, r.error)
        # read-only by permission bits: decided, not written, reported; file untouched
        ro = by_name["readonly.jpg"]
        assert ro.status == "tagged" and ro.write_status == "readonly" and "read-only" in ro.error
        assert fsutil.sha256_file(root / "readonly.jpg") == ro_sha
        assert rep.counts["readonly"] == 1
        for name, fragment in (("unreadable.jpg", "not readable"), ("locked", "not readable"),
                               ("back", "symlink loop"), ("self.jpg", "")):
            assert by_name[name].status == "skipped" and fragment in by_name[name].error, (name, by_name[name])
        bad = [r for r in results if "bad" in r.path and "name" in r.path]
        if sys.platform == "linux":
            assert len(bad) == 1 and bad[0].status == "skipped" and "not valid Unicode" in bad[0].error
        assert rep.exit_code == 0
        # nothing is marked done that was not done: failed rows are 'failed', none 'written'
        rows = {os.path.basename(r["path"]): r for r in cat.rows("SELECT * FROM photos")}
        for name in expected:
            assert rows[name]["status"] == "failed" and rows[name]["write_status"] != "written"
        assert rows["readonly.jpg"]["write_status"] == "readonly"
        # the next scan retries the failures (and only them)
        results.clear()
        rep2 = scan([str(root)], catalog=cat, model_dir=MODEL, recognizer=rec0, workers=1, on_result=results.append)
        assert rep2.counts["failed"] == len(expected) and rep2.counts["unchanged"] == 5
    finally:
        _unlock(root)
        cat.close()


def test_nothing_readable_gives_exit_code_1(tmp_path, rec0):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("hello")
    cat = open_catalog(tmp_path / "catalog.db")
    rep = scan([str(root)], catalog=cat, model_dir=MODEL, recognizer=rec0, workers=1)
    assert rep.counts["failed"] == 2 and rep.exit_code == 1
    rep = scan([str(tmp_path / "does-not-exist")], catalog=cat, model_dir=MODEL, recognizer=rec0, workers=1)
    assert rep.counts["skipped"] == 1 and rep.exit_code == 1
    cat.close()
