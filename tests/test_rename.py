"""Rename by landmark: groups, conflicts, unsafe names, dry run, journal, undo, cross-device copy."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from landmark_tagger import rename as R
from landmark_tagger import search as S
from landmark_tagger.catalog import open_catalog
from landmark_tagger.errors import RenameError

REPO = Path(__file__).resolve().parent.parent
CAMERA = REPO / "tests" / "data" / "camera"


def _jpeg(name: str) -> bytes:
    p = CAMERA / name
    if p.is_file():
        return p.read_bytes()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (len(name) * 7 % 255, 90, 40)).save(buf, "JPEG")
    return buf.getvalue()


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root."""
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def add(cat, path: Path, **kw):
    folder, name = os.path.split(str(path))
    stem, ext = os.path.splitext(name)
    if ext.upper() == ".NEF":
        kw.setdefault("role", "companion")
        kw.setdefault("kind", "raw")
    row = dict(path=str(path), folder=folder, name=name, stem=stem, ext=ext[1:], group_key=f"{folder}/{stem.casefold()}",
               kind="jpeg", status="tagged", size=path.stat().st_size if path.exists() else None)
    row.update(kw)
    cols = ", ".join(row)
    return cat.conn.execute(f"INSERT INTO photos({cols}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values())).lastrowid


def write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture()
def archive(tmp_path):
    """An archive with a JPG+NEF+sidecars group, a second photo of the same landmark and day, an unknown photo
    and a photo with an awkward landmark name; catalog rows inserted directly."""
    root = tmp_path / "Photos"
    d = root / "2019" / "Paris trip"
    write(d / "DSC_0001.JPG", _jpeg("nikon_d90_DSC_0003.JPG"))
    write(d / "DSC_0001.NEF", b"NEF stand-in " * 1000)
    write(d / "DSC_0001.xmp", b"<x:xmpmeta>adobe</x:xmpmeta>")
    write(d / "DSC_0001.NEF.xmp", b"<x:xmpmeta>darktable</x:xmpmeta>")
    write(d / "DSC_0001_01.NEF.xmp", b"<x:xmpmeta>darktable duplicate</x:xmpmeta>")
    write(d / "DSC_0001.NEF.pp3", b"[RawTherapee]")
    write(d / "DSC_0001.dop", b"DxO")
    write(d / "DSC_0002.JPG", _jpeg("nikon_d90_DSC_0011.JPG"))
    write(d / "DSC_00010.JPG", _jpeg("nikon_d3100_DSC_0008.JPG"))     # another photo whose name starts alike
    write(d / "DSC_0003.JPG", _jpeg("canon_g2_IMG_0308.JPG"))
    write(d / "notes.txt", b"not a photo")
    e = root / "2020"
    write(e / "IMG_0308.JPG", _jpeg("canon_5d3__K6A7946.JPG"))
    write(e / "IMG_0308.AAE", b"<plist>apple edits</plist>")
    cat = open_catalog(tmp_path / "cat.db")
    # DSC_0001.JPG's row holds a SHA-256 value, as catalogs from before XXH3-128 do: the journal keeps it and
    # every check of the move verifies it with SHA-256.
    add(cat, d / "DSC_0001.JPG", landmark="Eiffel Tower", taken_at="2019-05-01T10:00:00", confidence=0.9,
        content_hash=sha(d / "DSC_0001.JPG"), mtime_ns=(d / "DSC_0001.JPG").stat().st_mtime_ns,
        write_target=str(d / "DSC_0001.JPG"))
    add(cat, d / "DSC_0001.NEF", landmark="Eiffel Tower", taken_at="2019-05-01T10:00:00",
        write_target=str(d / "DSC_0001.xmp"))
    add(cat, d / "DSC_0002.JPG", landmark="Eiffel Tower", taken_at="2019-05-01T11:00:00", confidence=0.8)
    add(cat, d / "DSC_00010.JPG", landmark="Eiffel Tower", taken_at="2019-05-02T09:00:00", confidence=0.7)
    add(cat, d / "DSC_0003.JPG", landmark=None, status="unknown", taken_at="2019-05-01T12:00:00")
    add(cat, e / "IMG_0308.JPG", landmark="CON: ../Rīga/Old\tTown", taken_at="2020-01-01T00:00:00")
    yield root, cat
    cat.close()


def rel(root: Path, plan) -> dict[str, str]:
    return {os.path.relpath(o, root): os.path.relpath(n, root) for o, n in plan.moves()}


def test_plan_moves_groups_together(archive):
    root, cat = archive
    plan = R.plan_rename(cat, [root])
    moves = rel(root, plan)
    base = "Eiffel Tower/2019-05-01_Eiffel Tower_001"
    p = "2019/Paris trip/"
    assert moves == {
        p + "DSC_0001.JPG": base + ".JPG", p + "DSC_0001.NEF": base + ".NEF", p + "DSC_0001.xmp": base + ".xmp",
        p + "DSC_0001.NEF.xmp": base + ".NEF.xmp", p + "DSC_0001_01.NEF.xmp": base + "_01.NEF.xmp",
        p + "DSC_0001.NEF.pp3": base + ".NEF.pp3", p + "DSC_0001.dop": base + ".dop",
        p + "DSC_0002.JPG": "Eiffel Tower/2019-05-01_Eiffel Tower_002.JPG",
        p + "DSC_00010.JPG": "Eiffel Tower/2019-05-02_Eiffel Tower_001.JPG",
        "2020/IMG_0308.JPG": "_CON ..-Rīga-Old Town/2020-01-01__CON ..-Rīga-Old Town_001.JPG",
        "2020/IMG_0308.AAE": "_CON ..-Rīga-Old Town/2020-01-01__CON ..-Rīga-Old Town_001.AAE",
    }
    c = plan.counts()
    assert c["groups"] == 4 and c["files"] == 11 and c["unknown_kept"] == 1 and c["skipped"] == 0
    assert sorted(os.path.relpath(d, root) for d in plan.new_dirs) == ["Eiffel Tower", "_CON ..-Rīga-Old Town"]


def test_dry_run_changes_nothing(archive):
    root, cat = archive
    before = tree(root)
    db_before = cat.conn.execute("SELECT * FROM photos ORDER BY id").fetchall()
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--by-landmark", str(root), "--dry-run",
                        "--db", str(cat.path)], capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO),
                                                                               COLUMNS="250"))
    assert r.returncode == 0, r.stderr
    assert "2019-05-01_Eiffel Tower_001.NEF.xmp" in r.stdout.decode()
    assert "11 files in 4 photos" in r.stderr.decode() and "Dry run" in r.stderr.decode()
    assert tree(root) == before
    assert cat.conn.execute("SELECT * FROM photos ORDER BY id").fetchall() == db_before
    assert cat.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert cat.conn.execute("SELECT count(*) FROM rename_moves").fetchone()[0] == 0


def test_rename_then_undo_restores_every_path_and_byte(archive):
    root, cat = archive
    before = tree(root)
    plan = R.plan_rename(cat, [root])
    res = R.execute_rename(cat, plan)
    assert res.moved == 11 and res.groups == 4 and not res.skipped
    after = tree(root)
    assert sorted(after.values()) == sorted(before.values())          # same bytes, new names
    assert "Eiffel Tower/2019-05-01_Eiffel Tower_001_01.NEF.xmp" in after
    assert "2019/Paris trip/DSC_0001.JPG" not in after and "2019/Paris trip/DSC_0003.JPG" in after   # unknown stays
    new_jpg = str(root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.JPG")
    row = cat.photo_by_path(new_jpg)
    assert row and row["name"] == "2019-05-01_Eiffel Tower_001.JPG" and row["stem"] == "2019-05-01_Eiffel Tower_001"
    assert row["folder"] == str(root / "Eiffel Tower") and row["write_target"] == new_jpg
    nef = cat.photo_by_path(str(root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.NEF"))
    assert nef["group_key"] == row["group_key"] == f"{root}/Eiffel Tower/2019-05-01_eiffel tower_001"   # walk.py's
    assert nef["write_target"] == str(root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.xmp")
    assert new_jpg in [r["path"] for r in S.search(cat, '"2019 05 01 eiffel tower 001"', limit=None)]   # index
    assert S.search(cat, '"DSC_0001"') == []
    journal = cat.conn.execute("SELECT state, count(*) FROM rename_moves GROUP BY state").fetchall()
    assert journal == [("done", 11)]
    assert cat.conn.execute("SELECT kind, status FROM runs").fetchall() == [("rename", "done")]
    # a second run changes nothing
    again = R.plan_rename(cat, [root])
    assert again.moves() == [] and again.counts()["unchanged"] == 4
    # undo
    u = R.undo_rename(cat)
    assert u.restored == 11 and not u.problems and u.status == "undone" and u.folders_removed == 2
    assert tree(root) == before
    assert not (root / "Eiffel Tower").exists()
    assert cat.photo_by_path(str(root / "2019" / "Paris trip" / "DSC_0001.JPG"))["write_target"] == \
        str(root / "2019" / "Paris trip" / "DSC_0001.JPG")
    assert cat.conn.execute("SELECT status FROM runs").fetchone()[0] == "undone"
    with pytest.raises(RenameError):
        R.undo_rename(cat)


def test_unknown_as(archive):
    root, cat = archive
    plan = R.plan_rename(cat, [root], unknown_as="Unsorted")
    assert rel(root, plan)["2019/Paris trip/DSC_0003.JPG"] == "Unsorted/2019-05-01_Unsorted_001.JPG"


def test_conflict_target_exists_bumps_seq(archive):
    root, cat = archive
    existing = write(root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.xmp", b"somebody else's file")
    plan = R.plan_rename(cat, [root])
    moves = rel(root, plan)
    # the whole DSC_0001 group moves to seq 002 because one member's name is taken; DSC_0002 to 003
    assert moves["2019/Paris trip/DSC_0001.NEF"] == "Eiffel Tower/2019-05-01_Eiffel Tower_002.NEF"
    assert moves["2019/Paris trip/DSC_0002.JPG"] == "Eiffel Tower/2019-05-01_Eiffel Tower_003.JPG"
    assert plan.counts()["seq_bumped"] >= 1
    R.execute_rename(cat, plan)
    assert existing.read_bytes() == b"somebody else's file"


def test_conflict_case_only(archive):
    root, cat = archive
    # a folder and file that differ only in case: one and the same on case-insensitive file systems
    write(root / "eiffel tower" / "2019-05-01_EIFFEL TOWER_001.jpg", b"case-insensitive twin")
    plan = R.plan_rename(cat, [root])
    assert rel(root, plan)["2019/Paris trip/DSC_0001.JPG"] == "Eiffel Tower/2019-05-01_Eiffel Tower_002.JPG"
    targets = [n.casefold() for _o, n in plan.moves()]
    assert len(targets) == len(set(targets))


def test_conflict_case_only_same_folder(archive):
    root, cat = archive
    (root / "Eiffel Tower").mkdir()
    write(root / "Eiffel Tower" / "2019-05-01_eiffel tower_001.jpg", b"lower-case twin")
    plan = R.plan_rename(cat, [root])
    assert rel(root, plan)["2019/Paris trip/DSC_0001.JPG"] == "Eiffel Tower/2019-05-01_Eiffel Tower_002.JPG"


def test_conflict_two_sources_one_target(archive):
    root, cat = archive
    with pytest.raises(RenameError, match=r"\{seq\}"):
        R.plan_rename(cat, [root], template="{landmark}/{date:%Y}")   # DSC_0001 and DSC_0002 -> same name
    plan = R.plan_rename(cat, [root], template="{landmark}/{date:%Y}_{seq}")
    targets = [n.casefold() for _o, n in plan.moves()]
    assert len(targets) == len(set(targets))


def test_conflict_target_is_another_source(archive):
    root, cat = archive
    # a Colosseum photo sits exactly where an Eiffel Tower photo would go; it moves away in the same batch
    blocker = write(root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.JPG", _jpeg("nikon_e995_DSCN1325.JPG"))
    add(cat, blocker, landmark="Colosseum", taken_at="2018-01-01T00:00:00")
    before = tree(root)
    plan = R.plan_rename(cat, [root])
    moves = rel(root, plan)
    assert moves["Eiffel Tower/2019-05-01_Eiffel Tower_001.JPG"] == "Colosseum/2018-01-01_Colosseum_001.JPG"
    assert moves["2019/Paris trip/DSC_0001.JPG"] == "Eiffel Tower/2019-05-01_Eiffel Tower_002.JPG"
    R.execute_rename(cat, plan)
    assert sorted(tree(root).values()) == sorted(before.values())
    R.undo_rename(cat)
    assert tree(root) == before


def test_conflict_target_in_catalog_only(archive):
    root, cat = archive
    ghost = root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_001.JPG"     # a stale catalog row, no file
    add(cat, ghost, landmark="Eiffel Tower", status="failed")
    plan = R.plan_rename(cat, [root])
    assert rel(root, plan)["2019/Paris trip/DSC_0001.JPG"] == "Eiffel Tower/2019-05-01_Eiffel Tower_002.JPG"


def test_template_escaping_root_refused(archive):
    root, cat = archive
    before = tree(root)
    for t in ("../{landmark}", "/tmp/{landmark}", "{landmark}/../../{seq}"):
        with pytest.raises(RenameError):
            R.plan_rename(cat, [root], template=t)
    # a hostile landmark name cannot escape either
    cat.conn.execute("UPDATE photos SET landmark = '../../../../etc' WHERE name = 'DSC_0002.JPG'")
    plan = R.plan_rename(cat, [root], template="{landmark}/{seq}")
    for _o, n in plan.moves():
        assert os.path.commonpath([str(root), n]) == str(root)
    assert tree(root) == before


def test_readonly_member_skips_whole_group(archive):
    root, cat = archive
    d = root / "2019" / "Paris trip"
    (d / "DSC_0001.NEF.pp3").chmod(0o444)
    plan = R.plan_rename(cat, [root])
    (skipped,) = plan.skipped
    assert skipped.stem == "DSC_0001" and "read-only" in skipped.reason
    assert not any("DSC_0001." in o or "DSC_0001_" in o for o, _n in plan.moves())
    R.execute_rename(cat, plan)
    assert (d / "DSC_0001.JPG").exists() and (d / "DSC_0001.NEF.pp3").exists() and not (d / "DSC_0002.JPG").exists()


@pytest.mark.skipif(os.name != "posix", reason="folder permission bits")
def test_readonly_folder_skips(archive):
    root, cat = archive
    e = root / "2020"
    e.chmod(0o555)
    try:
        plan = R.plan_rename(cat, [root])
        assert any(g.stem == "IMG_0308" and "read-only" in g.reason for g in plan.skipped)
    finally:
        e.chmod(0o755)


def test_vanished_file_skipped_and_reported(archive):
    root, cat = archive
    (root / "2020" / "IMG_0308.JPG").unlink()
    plan = R.plan_rename(cat, [root])
    assert any(g.stem == "IMG_0308" and "vanished" in g.reason for g in plan.skipped)
    assert (root / "2020" / "IMG_0308.AAE").exists()
    # a file that vanishes between plan and execution: its group stays, the batch goes on
    (root / "2019" / "Paris trip" / "DSC_0001.dop").unlink()
    res = R.execute_rename(cat, plan)
    assert any("DSC_0001.dop" in p for p, _why in res.skipped)
    assert (root / "2019" / "Paris trip" / "DSC_0001.JPG").exists()        # moved back with its group
    assert (root / "2019" / "Paris trip" / "DSC_0001.NEF").exists()
    assert not (root / "2019" / "Paris trip" / "DSC_0002.JPG").exists()
    states = dict(cat.conn.execute("SELECT old_path, state FROM rename_moves").fetchall())
    assert states[str(root / "2019" / "Paris trip" / "DSC_0001.JPG")] == "skipped"
    assert cat.photo_by_path(str(root / "2019" / "Paris trip" / "DSC_0001.JPG")) is not None


def test_rename_noreplace_never_overwrites(tmp_path, monkeypatch):
    a, b = write(tmp_path / "a", b"A"), write(tmp_path / "b", b"B")
    with pytest.raises(FileExistsError):
        R.rename_noreplace(str(a), str(b))
    monkeypatch.setattr(R, "_renameat2", False)           # the link + unlink fallback
    with pytest.raises(FileExistsError):
        R.rename_noreplace(str(a), str(b))
    assert a.read_bytes() == b"A" and b.read_bytes() == b"B"
    R.rename_noreplace(str(a), str(tmp_path / "c"))
    assert not a.exists() and (tmp_path / "c").read_bytes() == b"A"


def test_cross_device_moves_copy_verify_delete(archive, monkeypatch):
    root, cat = archive
    before = tree(root)
    real = R.rename_noreplace

    def no_cross(src, dst):   # behave as if every source were on another device: only temp renames work
        if ".ltag-tmp-" not in os.path.basename(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(R, "rename_noreplace", no_cross)
    plan = R.plan_rename(cat, [root])
    res = R.execute_rename(cat, plan)
    assert res.moved == 11
    after = tree(root)
    assert sorted(after.values()) == sorted(before.values())
    assert not [p for p in root.rglob("*") if ".ltag-tmp-" in p.name]
    src = root / "2019" / "Paris trip" / "DSC_0001.JPG"
    assert not src.exists()
    R.undo_rename(cat)
    assert tree(root) == before


def test_copy_move_refuses_a_mismatching_copy(tmp_path):
    src = write(tmp_path / "a" / "x.JPG", b"x" * 5000)
    dst = tmp_path / "b" / "x.JPG"
    dst.parent.mkdir()
    tmp = R._temp_for(str(dst), 1, 1)
    with pytest.raises(OSError):
        R._copy_move(str(src), str(dst), tmp, 5000, "0" * 64)
    assert src.read_bytes() == b"x" * 5000 and not dst.exists() and not os.path.exists(tmp)


def test_unfinished_batch_blocks_new_one(archive):
    root, cat = archive
    plan = R.plan_rename(cat, [root])
    run_id = R._journal(cat.conn, plan)          # journaled, then "killed" before the first move
    with pytest.raises(RenameError, match="--resume"):
        R.execute_rename(cat, R.plan_rename(cat, [root]))
    res = R.resume_rename(cat)
    assert res.run_id == run_id and res.moved == 11
    with pytest.raises(RenameError):
        R.resume_rename(cat)


def test_cli_rename_yes_and_undo(archive):
    root, cat = archive
    before = tree(root)
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="250", LTAG_DB=str(cat.path))
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--by-landmark", str(root), "--yes"],
                       capture_output=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "Lightroom" in r.stderr.decode() and "Renamed" in r.stdout.decode()
    assert "\r" not in r.stderr.decode() and "/11 files" not in r.stderr.decode()   # no counters into a pipe
    assert tree(root) != before
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--undo"], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr
    assert tree(root) == before
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", str(root)], capture_output=True, env=env)
    assert r.returncode == 1 and b"--by-landmark" in r.stderr


def test_confirmation_declined_changes_nothing(archive):
    root, cat = archive
    before = tree(root)
    env = dict(os.environ, PYTHONPATH=str(REPO), LTAG_DB=str(cat.path))
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--by-landmark", str(root)],
                       input=b"n\n", capture_output=True, env=env)
    assert r.returncode == 1 and tree(root) == before
    assert cat.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_undo_reports_file_moved_away(archive):
    root, cat = archive
    R.execute_rename(cat, R.plan_rename(cat, [root]))
    moved_away = root / "Eiffel Tower" / "2019-05-01_Eiffel Tower_002.JPG"
    shutil.move(str(moved_away), str(root / "elsewhere.JPG"))
    res = R.undo_rename(cat)
    assert res.status == "partly undone" and any("missing" in why for _p, why in res.problems)
    assert (root / "2019" / "Paris trip" / "DSC_0001.JPG").exists()
    json.dumps(R.batch_moves(cat, res.run_id))
    st = stat.S_IMODE((root / "elsewhere.JPG").stat().st_mode)
    assert st


def test_ltag_undo_dispatches_rename_batches(archive):
    undo = pytest.importorskip("landmark_tagger.undo")
    root, cat = archive
    before = tree(root)
    res = R.execute_rename(cat, R.plan_rename(cat, [root]))
    report = undo.undo(cat, rename=True)          # what `ltag undo --rename` runs
    assert report.runs == [res.run_id] and report.renames and report.renames[0].restored == 11
    assert tree(root) == before
    assert cat.conn.execute("SELECT status FROM runs WHERE id = ?", (res.run_id,)).fetchone()[0] == "undone"


def test_plan_table_shows_every_name_in_full_on_a_narrow_terminal(archive):
    # found by the end-to-end review: at 80 columns the plan cut long new names with "…" (extension hidden)
    root, cat = archive
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--by-landmark", str(root), "--dry-run",
                        "--db", str(cat.path)], capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO),
                                                                               COLUMNS="40"))
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "…" not in text
    cells = "".join(line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 2)
    for _old, new in R.plan_rename(cat, [root]).moves():
        assert os.path.relpath(new, root).replace(" ", "") in cells.replace(" ", "")


def test_undated_group_takes_its_oldest_file_time_not_the_rewritten_jpeg(tmp_path):
    # found by the end-to-end review: an undated JPEG+RAW pair was named by the JPEG's mtime, which ltag's own
    # keyword write had just set to the day of the scan; the never-written RAW keeps the camera's time
    root = tmp_path / "Photos"
    jpg = write(root / "card" / "DSC_0500.JPG", _jpeg("nikon_d90_DSC_0003.JPG"))
    nef = write(root / "card" / "DSC_0500.NEF", b"NEF stand-in " * 100)
    os.utime(nef, (1557223200, 1557223200))                      # 2019-05-07 (local time, +-1 day)
    os.utime(jpg, (1717236000, 1717236000))                      # 2024-06-01: when ltag wrote keywords
    cat = open_catalog(tmp_path / "cat.db")
    add(cat, jpg, landmark="Eiffel Tower", taken_at=None)
    add(cat, nef, landmark="Eiffel Tower", taken_at=None)
    try:
        (g,) = R.plan_rename(cat, [root]).groups
        assert g.date.date().isoformat()[:7] == "2019-05"
        add(cat, write(root / "b" / "DSC_0600.JPG", _jpeg("nikon_d90_DSC_0011.JPG")), landmark="Colosseum",
            taken_at=None)
        add(cat, write(root / "b" / "DSC_0600.NEF", b"NEF"), landmark="Colosseum", taken_at="2018-03-04T05:06:07")
        dates = {g.landmark: g.date for g in R.plan_rename(cat, [root]).groups}
        assert dates["Colosseum"].isoformat() == "2018-03-04T05:06:07"   # the RAW's capture date
    finally:
        cat.close()


def test_plan_summary_does_not_call_an_unreadable_file_unscanned(archive):
    # found by the end-to-end review: a truncated RAW that every scan fails on was counted "not recognised yet"
    root, cat = archive
    add(cat, write(root / "bad" / "DSC_0900.NEF", b"truncated"), landmark=None, status="failed",
        error="truncated or corrupt RAW", role="primary")
    r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--by-landmark", str(root), "--dry-run",
                        "--db", str(cat.path)], capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO),
                                                                               COLUMNS="250"))
    err = " ".join(r.stderr.decode().split())
    assert r.returncode == 0 and "1 not recognised (not scanned yet, or unreadable)" in err, err
