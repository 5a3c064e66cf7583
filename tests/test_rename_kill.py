"""kill -9 at random moments of a rename batch (and of its undo): resume or undo loses and orphans nothing.

The batch runs as ``ltag rename`` in a subprocess slowed down by ``LTAG_TEST_SLOW_RENAME`` (a hook that
only sleeps before each move and between a move and its journal commit), and is killed with SIGKILL
after a random delay once its journal is written.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_rename import archive, tree  # noqa: F401  (fixture + helper shared with the rename tests)

from landmark_tagger import rename as R
from landmark_tagger.catalog import open_catalog

REPO = Path(__file__).resolve().parent.parent
SLOW = "0.03"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")


def _journal_written(db: Path) -> bool:
    try:
        c = sqlite3.connect(str(db), timeout=5)
        try:
            return c.execute("SELECT count(*) FROM rename_moves").fetchone()[0] > 0
        finally:
            c.close()
    except sqlite3.Error:
        return False


def _kill_midway(args: list[str], db: Path, rng: random.Random, max_delay: float) -> bool:
    """Run ``ltag ARGS`` and SIGKILL it a random time after its journal exists; True if it was killed."""
    env = dict(os.environ, PYTHONPATH=str(REPO), LTAG_DB=str(db), LTAG_TEST_SLOW_RENAME=SLOW)
    p = subprocess.Popen([sys.executable, "-m", "landmark_tagger", *args], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while p.poll() is None and time.monotonic() < deadline and not _journal_written(db):
        time.sleep(0.005)
    time.sleep(rng.uniform(0, max_delay))
    killed = p.poll() is None
    if killed:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return killed


def _no_temps(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".ltag-tmp-" in p.name]


def _catalog_consistent(cat, root: Path) -> None:
    for (path,) in cat.conn.execute("SELECT path FROM photos WHERE status != 'failed'"):
        assert os.path.exists(path), f"catalog row points at a missing file: {path}"


@pytest.mark.parametrize("seed", range(6))
def test_kill_then_resume(archive, seed):  # noqa: F811
    root, cat = archive
    before = tree(root)
    plan = R.plan_rename(cat, [root])
    expected = {os.path.relpath(n, root): before[os.path.relpath(o, root)] for o, n in plan.moves()}
    rng = random.Random(seed)
    killed = _kill_midway(["rename", "--by-landmark", str(root), "--yes"], Path(cat.path), rng, 0.8)
    mid = tree(root)
    assert set(before.values()) <= set(mid.values())      # nothing lost at the moment of the kill
    cat.conn.close()
    cat2 = open_catalog(cat.path)
    try:
        if killed and R.unfinished_batch(cat2) is not None:
            if seed % 2:   # through the CLI
                env = dict(os.environ, PYTHONPATH=str(REPO), LTAG_DB=str(cat.path))
                r = subprocess.run([sys.executable, "-m", "landmark_tagger", "rename", "--resume"], env=env,
                                   capture_output=True)
                assert r.returncode == 0, r.stderr
                assert b"completed" in r.stderr
            else:
                R.resume_rename(cat2)
        after = tree(root)
        _no_temps(root)
        assert sorted(after.values()) == sorted(before.values())
        for relpath, digest in expected.items():
            assert after.get(relpath) == digest, relpath
        states = cat2.conn.execute("SELECT DISTINCT state FROM rename_moves").fetchall()
        assert states == [("done",)]
        _catalog_consistent(cat2, root)
        # and the completed batch still undoes byte-exactly
        R.undo_rename(cat2)
        assert tree(root) == before
        _catalog_consistent(cat2, root)
    finally:
        cat2.close()


@pytest.mark.parametrize("seed", range(6))
def test_kill_then_undo(archive, seed):  # noqa: F811
    root, cat = archive
    before = tree(root)
    rng = random.Random(100 + seed)
    _kill_midway(["rename", "--by-landmark", str(root), "--yes"], Path(cat.path), rng, 0.8)
    cat.conn.close()
    cat2 = open_catalog(cat.path)
    try:
        res = R.undo_rename(cat2)
        assert not res.problems
        assert tree(root) == before
        _no_temps(root)
        assert not (root / "Eiffel Tower").exists()
        _catalog_consistent(cat2, root)
        assert R.unfinished_batch(cat2) is None
    finally:
        cat2.close()


@pytest.mark.parametrize("seed", range(3))
def test_kill_undo_then_undo_again(archive, seed):  # noqa: F811
    root, cat = archive
    before = tree(root)
    R.execute_rename(cat, R.plan_rename(cat, [root]))
    cat.conn.close()
    rng = random.Random(200 + seed)
    env = dict(os.environ, PYTHONPATH=str(REPO), LTAG_DB=str(cat.path), LTAG_TEST_SLOW_RENAME=SLOW)
    p = subprocess.Popen([sys.executable, "-m", "landmark_tagger", "rename", "--undo"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.6 + rng.uniform(0, 0.6))
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    cat2 = open_catalog(cat.path)
    try:
        row = cat2.conn.execute("SELECT status FROM runs WHERE kind = 'rename'").fetchone()
        if row[0] != "undone":
            res = R.undo_rename(cat2)
            assert not res.problems
        assert tree(root) == before
        _catalog_consistent(cat2, root)
    finally:
        cat2.close()


def _half_done_batch(cat, root: Path) -> list[dict]:
    """Journal a batch and leave it as a kill would at the three awkward moments: a move done on disk but not
    committed, a link + unlink move between its two steps, a cross-device copy's temp file half written."""
    plan = R.plan_rename(cat, [root])
    run_id = R._journal(cat.conn, plan)
    moves = R.batch_moves(cat, run_id)
    m1, m2, m3 = moves[0], moves[1], moves[2]
    os.makedirs(os.path.dirname(m1["new_path"]), exist_ok=True)
    os.rename(m1["old_path"], m1["new_path"])                         # moved, journal still says pending
    os.link(m2["old_path"], m2["new_path"])                           # link made, source not yet unlinked
    tmp = R._temp_for(m3["new_path"], run_id, m3["seq"])
    with open(m3["old_path"], "rb") as f:
        Path(tmp).write_bytes(f.read()[: m3["size"] // 2])            # half a copy
    return moves


def test_resume_settles_each_interrupted_state(archive):  # noqa: F811
    root, cat = archive
    before = tree(root)
    moves = _half_done_batch(cat, root)
    res = R.resume_rename(cat)
    assert res.moved == len(moves) and not res.skipped
    _no_temps(root)
    after = tree(root)
    assert sorted(after.values()) == sorted(before.values())
    assert all(os.path.exists(m["new_path"]) and not os.path.exists(m["old_path"]) for m in moves)
    _catalog_consistent(cat, root)


def test_undo_settles_each_interrupted_state(archive):  # noqa: F811
    root, cat = archive
    before = tree(root)
    _half_done_batch(cat, root)
    res = R.undo_rename(cat)
    assert not res.problems and res.status == "undone"
    assert tree(root) == before
    _catalog_consistent(cat, root)


def test_resume_refuses_a_foreign_file_at_the_target(archive):  # noqa: F811
    root, cat = archive
    plan = R.plan_rename(cat, [root])
    run_id = R._journal(cat.conn, plan)
    m1 = R.batch_moves(cat, run_id)[0]
    os.makedirs(os.path.dirname(m1["new_path"]), exist_ok=True)
    Path(m1["new_path"]).write_bytes(b"someone else's file")
    res = R.resume_rename(cat)
    assert res.skipped and Path(m1["new_path"]).read_bytes() == b"someone else's file"
    assert os.path.exists(m1["old_path"])
