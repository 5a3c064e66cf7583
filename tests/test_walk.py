"""walk: skips, excludes, RAW+JPEG grouping, symlink loops, unreadable folders, odd names (real files)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from conftest import camera_file

from landmark_tagger.walk import walk

JPG = "nikon_d90_DSC_0003.JPG"
RAW = "sony_a330_truncated_100k.arw"


def _names(res):
    return sorted((os.path.basename(g.primary.path), tuple(sorted(os.path.basename(c.path) for c in g.companions)))
                  for g in res.groups)


def test_groups_raw_and_jpeg_by_stem_case_insensitive(tmp_path):
    shutil.copy(camera_file(JPG), tmp_path / "DSC_0001.JPG")
    shutil.copy(camera_file(RAW), tmp_path / "dsc_0001.ARW")
    shutil.copy(camera_file(RAW), tmp_path / "DSC_0002.ARW")  # RAW alone: its own primary
    shutil.copy(camera_file(JPG), tmp_path / "DSC_0003.jpeg")
    (tmp_path / "DSC_0001.xmp").write_text("<x/>")  # sidecars are not photos
    res = walk([tmp_path])
    assert _names(res) == [("DSC_0001.JPG", ("dsc_0001.ARW",)), ("DSC_0002.ARW", ()), ("DSC_0003.jpeg", ())]
    g = next(g for g in res.groups if g.companions)
    assert g.primary.kind == "jpeg" and g.companions[0].kind == "raw"
    assert g.key == f"{tmp_path}/dsc_0001"
    assert res.ignored == 1 and not res.problems


def test_skips_what_is_not_the_photographers(tmp_path):
    shutil.copy(camera_file(JPG), tmp_path / "keep.jpg")
    for sub in ("@eaDir", "Previews.lrdata", ".thumbnails", ".hidden", "sub"):
        (tmp_path / sub).mkdir()
        shutil.copy(camera_file(JPG), tmp_path / sub / "x.jpg")
    shutil.copy(camera_file(JPG), tmp_path / "._keep.jpg")  # AppleDouble
    shutil.copy(camera_file(JPG), tmp_path / ".secret.jpg")
    res = walk([tmp_path])
    assert sorted(os.path.relpath(g.primary.path, tmp_path) for g in res.groups) == ["keep.jpg", "sub/x.jpg"]


def test_exclude_globs(tmp_path):
    (tmp_path / "rejects").mkdir()
    (tmp_path / "2024").mkdir()
    shutil.copy(camera_file(JPG), tmp_path / "rejects" / "a.jpg")
    shutil.copy(camera_file(JPG), tmp_path / "2024" / "b.jpg")
    shutil.copy(camera_file(JPG), tmp_path / "2024" / "b_edit.jpg")
    res = walk([tmp_path], exclude=["rejects", "*_edit.jpg"])
    assert [os.path.relpath(g.primary.path, tmp_path) for g in res.groups] == ["2024/b.jpg"]


def test_symlink_loop_is_reported_not_fatal(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(camera_file(JPG), tmp_path / "a" / "p.jpg")
    os.symlink("..", tmp_path / "a" / "loop")
    os.symlink("self.jpg", tmp_path / "self.jpg")  # a link to itself: ELOOP
    res = walk([tmp_path])
    assert [os.path.relpath(g.primary.path, tmp_path) for g in res.groups] == ["a/p.jpg"]
    errors = {os.path.relpath(p.path, tmp_path): p.error for p in res.problems}
    assert "symlink loop" in errors["a/loop"]
    assert "self.jpg" in errors


def test_unreadable_folder_and_file_by_permission_bits(tmp_path):
    (tmp_path / "locked").mkdir()
    shutil.copy(camera_file(JPG), tmp_path / "locked" / "x.jpg")
    shutil.copy(camera_file(JPG), tmp_path / "secret.jpg")
    shutil.copy(camera_file(JPG), tmp_path / "ok.jpg")
    os.chmod(tmp_path / "secret.jpg", 0o000)
    os.chmod(tmp_path / "locked", 0o000)
    try:
        res = walk([tmp_path])
    finally:
        os.chmod(tmp_path / "locked", 0o755)
        os.chmod(tmp_path / "secret.jpg", 0o644)
    assert [os.path.basename(g.primary.path) for g in res.groups] == ["ok.jpg"]
    errors = {os.path.basename(p.path): p.error for p in res.problems}
    assert "not readable" in errors["locked"]
    assert "not readable" in errors["secret.jpg"]


@pytest.mark.skipif(sys.platform != "linux", reason="byte names need a POSIX file system")
def test_odd_unicode_names(tmp_path):
    names = ["Ålesund – fjord.JPG", "東京タワー.jpg", "e\u0301cole.jpg", "new\nline.jpg", "emoji 🏔.jpg"]
    for n in names:
        shutil.copy(camera_file(JPG), tmp_path / n)
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xff\xfename.jpg")
    shutil.copy(camera_file(JPG), bad)
    res = walk([tmp_path])
    assert sorted(os.path.basename(g.primary.path) for g in res.groups) == sorted(names)
    assert len(res.problems) == 1 and "not valid Unicode" in res.problems[0].error


def test_missing_path_and_single_files(tmp_path):
    shutil.copy(camera_file(JPG), tmp_path / "A.JPG")
    shutil.copy(camera_file(RAW), tmp_path / "A.ARW")
    res = walk([tmp_path / "A.JPG", tmp_path / "A.ARW", tmp_path / "nope"])
    assert _names(res) == [("A.JPG", ("A.ARW",))]
    assert [os.path.basename(p.path) for p in res.problems] == ["nope"]


def test_stale_temps_are_collected(tmp_path):
    shutil.copy(camera_file(JPG), tmp_path / "a.jpg")
    (tmp_path / ".a.jpg.ltag-tmp-0123456789ab").write_bytes(b"partial")
    res = walk([tmp_path])
    assert res.stale_temps == {str(tmp_path): [".a.jpg.ltag-tmp-0123456789ab"]}


def test_known_fast_path_counts_unchanged_folders_only(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    for d in ("old", "new"):
        shutil.copy(camera_file(JPG), tmp_path / d / "A.JPG")
        shutil.copy(camera_file(RAW), tmp_path / d / "A.ARW")
    known = {}
    for d in ("old", "new"):
        for n in ("A.JPG", "A.ARW"):
            st = os.stat(tmp_path / d / n)
            known[str(tmp_path / d / n)] = (st.st_size, st.st_mtime_ns)
    shutil.copy(camera_file(JPG), tmp_path / "new" / "B.JPG")  # a new file: its folder is walked in full
    os.utime(tmp_path / "new" / "A.ARW", ns=(1, 1))  # a changed companion stays in its group
    res = walk([tmp_path], known=known)
    assert res.unchanged == 2
    assert _names(res) == [("A.JPG", ("A.ARW",)), ("B.JPG", ())]
    assert all(g.primary.folder == str(tmp_path / "new") for g in res.groups)
