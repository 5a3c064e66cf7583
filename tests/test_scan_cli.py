"""`ltag scan` / `ltag write` / `ltag undo` as a user runs them: JSON Lines, exit codes, --dry-run touches
nothing (every file and the catalog hashed before and after)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import camera_file

from landmark_tagger import fsutil

MODEL = os.environ.get("LTAG_TEST_MODEL")  # default: the shipped bundle
JPG = "nikon_d90_DSC_0003.JPG"
RAW = "sony_a330_truncated_100k.arw"


@pytest.fixture(scope="module", autouse=True)
def _needs_bundle():
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.errors import BundleError

    try:
        load_bundle(MODEL, check_model=False)
    except BundleError as e:
        pytest.skip(f"default model bundle not installed: {e}")


def ltag(*args, check=True):
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("LTAG_DB", None)
    args = [*args, *(["--model", MODEL] if MODEL and args[0] == "scan" else [])]
    p = subprocess.run([sys.executable, "-m", "landmark_tagger", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"ltag {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): fsutil.sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _archive(root: Path) -> Path:
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(camera_file(JPG), photos / "DSC_0003.JPG")
    shutil.copy(camera_file(RAW), photos / "DSC_0003.ARW")
    shutil.copy(camera_file("canon_g2_IMG_0308.JPG"), photos / "sub" / "IMG_0308.JPG")
    (photos / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    return photos


def test_scan_json_lines_then_rescan_then_undo(tmp_path):
    photos = _archive(tmp_path)
    db = tmp_path / "cat.db"
    before = tree_hashes(photos)
    p = ltag("scan", photos, "--db", db, "--json", "--threshold", "0", "--workers", "2")
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert {tuple(sorted(d)) for d in lines} == {tuple(sorted(["path", "group", "landmark", "confidence", "places",
                                                              "keywords", "status", "error", "write", "target",
                                                              "role", "moved_from"]))}
    by = {Path(d["path"]).name: d for d in lines}
    assert set(by) == {"DSC_0003.JPG", "DSC_0003.ARW", "IMG_0308.JPG", "broken.jpg"}
    assert by["DSC_0003.JPG"]["status"] == "tagged" and by["DSC_0003.JPG"]["landmark"]
    assert by["DSC_0003.ARW"]["group"] == by["DSC_0003.JPG"]["group"]
    assert by["broken.jpg"]["status"] == "failed" and by["broken.jpg"]["error"]
    assert by["DSC_0003.JPG"]["keywords"] == [by["DSC_0003.JPG"]["landmark"], f"Landmarks|{by['DSC_0003.JPG']['landmark']}"]
    assert "tagged" in p.stderr and "failed" in p.stderr  # the summary table goes to stderr
    p2 = ltag("scan", photos, "--db", db, "--json")
    assert {json.loads(line)["status"] for line in p2.stdout.splitlines()} == {"unchanged", "failed"}
    u = ltag("undo", "--db", db)
    assert "restored 2" in u.stderr and "deleted 1" in u.stderr
    assert tree_hashes(photos) == before
    assert ltag("undo", "--db", db, check=False).returncode == 1  # nothing left to undo


def test_dry_run_touches_nothing(tmp_path):
    photos = _archive(tmp_path)
    db = tmp_path / "cat.db"
    before = tree_hashes(tmp_path)
    p = ltag("scan", photos, "--db", db, "--dry-run", "--threshold", "0")
    assert "would write" in p.stdout
    assert tree_hashes(tmp_path) == before and not db.exists()  # not even a catalog file appears
    ltag("scan", photos / "sub", "--db", db, "--threshold", "0")  # a real catalog now exists
    before = tree_hashes(tmp_path)
    p = ltag("scan", photos, "--db", db, "--dry-run", "--threshold", "0", "--json")
    statuses = {Path(json.loads(x)["path"]).name: json.loads(x)["write"] for x in p.stdout.splitlines()}
    assert statuses["DSC_0003.JPG"] == "dry-run"
    assert tree_hashes(tmp_path) == before  # files, catalog and its folder unchanged


def test_nothing_readable_exit_code(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.jpg").write_bytes(b"")
    p = ltag("scan", tmp_path / "x", "--db", tmp_path / "c.db", check=False)
    assert p.returncode == 1 and "empty file" in p.stderr


def test_write_puts_back_keywords_after_undo(tmp_path):
    """After `ltag undo` of a scan, `ltag write` writes the catalog's decisions again (write_status 'undone')."""
    photos = _archive(tmp_path)
    db = tmp_path / "cat.db"
    ltag("scan", photos, "--db", db, "--threshold", "0")  # threshold 0: every readable photo gets a landmark
    written = fsutil.sha256_file(photos / "DSC_0003.JPG")
    ltag("undo", "--db", db)
    original = fsutil.sha256_file(camera_file(JPG))
    assert fsutil.sha256_file(photos / "DSC_0003.JPG") == original
    out = ltag("search", "--unwritten", "--paths", "--db", db).stdout.splitlines()
    assert str(photos / "DSC_0003.JPG") in out
    ltag("write", "--db", db)
    assert fsutil.sha256_file(photos / "DSC_0003.JPG") == written


def test_dry_run_with_a_folder_as_catalog_is_a_clear_error(tmp_path):
    photos = _archive(tmp_path)
    p = ltag("scan", photos, "--dry-run", "--db", tmp_path, check=False)
    assert p.returncode == 1
    assert "Cannot open the catalog" in p.stderr and "Traceback" not in p.stderr


def test_json_lines_carry_role_and_moved_from(tmp_path):
    photos = _archive(tmp_path)
    db = tmp_path / "cat.db"
    ltag("scan", photos, "--db", db, "--no-write")
    (photos / "moved").mkdir()
    os.rename(photos / "sub" / "IMG_0308.JPG", photos / "moved" / "IMG_0308.JPG")
    lines = [json.loads(x) for x in ltag("scan", photos, "--db", db, "--no-write", "--json").stdout.splitlines()]
    assert all("role" in x and "moved_from" in x for x in lines)
    moved = [x for x in lines if x["path"].endswith(os.path.join("moved", "IMG_0308.JPG"))]
    assert moved and moved[0]["moved_from"] == str(photos / "sub" / "IMG_0308.JPG")


def test_closed_stdout_stops_quietly(tmp_path):
    """`ltag scan --json | head -1`: no traceback, no error message, exit by SIGPIPE convention."""
    photos = _archive(tmp_path)
    db = tmp_path / "cat.db"
    env = {**os.environ}
    env.pop("LTAG_DB", None)
    p = subprocess.run(f"{sys.executable} -m landmark_tagger scan '{photos}' --db '{db}' --no-write --json | head -c 1",
                       shell=True, capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr


@pytest.mark.parametrize(("argv", "starts"), [
    (["scan", "~/Photos"], True),
    (["scan", "--no-write", "--workers", "2", "card"], True),
    (["scan", "--workers", "1", "card"], False),
    (["scan", "--workers=1", "card"], False),
    (["scan", "--retag", "card"], False),
    (["scan", "--help"], False),
    (["scan", "-h"], False),
    (["search", "scan"], False),
    ([], False),
])
def test_console_script_starts_the_decoders_fork_server_only_for_a_decoding_scan(monkeypatch, argv, starts):
    from landmark_tagger import forkserver

    started = []
    monkeypatch.setattr(forkserver, "start", lambda: started.append(True))
    forkserver.start_for_argv(argv)
    assert started == ([True] if starts else [])


def test_a_fork_server_that_cannot_start_early_does_not_stop_the_cli(monkeypatch):
    from landmark_tagger import forkserver

    def fail():
        raise OSError("no more processes")

    monkeypatch.setattr(forkserver, "start", fail)
    forkserver.start_for_argv(["scan", "card"])  # no exception: the scan starts it itself (or falls back)


def test_a_read_only_photo_keeps_its_decision_and_write_adds_it_once_writable(tmp_path):
    """The first-time flow for a read-only photo: scan reports it, says how to get the keywords in, changes nothing;
    once the photo is writable again, `ltag write` writes the decision the catalog kept."""
    photos = tmp_path / "photos"
    photos.mkdir()
    jpg = photos / JPG
    shutil.copyfile(camera_file(JPG), jpg)
    jpg.chmod(0o444)
    before = fsutil.sha256_file(jpg)
    db = tmp_path / "c.db"
    p = ltag("scan", photos, "--db", db, "--threshold", "0", "--workers", "1")
    assert "make them writable, then `ltag write`" in " ".join(p.stderr.split())
    assert fsutil.sha256_file(jpg) == before
    jpg.chmod(0o644)
    p = ltag("write", "--db", db)
    assert fsutil.sha256_file(jpg) != before
    assert any(line.split()[:1] == ["written"] and line.split()[-1] == "1" for line in p.stderr.splitlines())
    # the decision's keywords are in the file, none of them taken for one the user deleted
    from landmark_tagger import metadata

    state = metadata.read_keywords(jpg)
    landmark = json.loads(ltag("search", "--db", db, "--json", "").stdout.splitlines()[0])["landmark"]
    assert landmark in state.flat and f"Landmarks|{landmark}" in state.hierarchical
    assert state.suppressed == []
