"""Scan speed, in one run on the same files and cores (issue 4, "Speed"):

1. decode-only ceiling: ``decode_for_model`` + resize over the archive's photos on all cores
   (:func:`benchmarks.decode.decode_ceiling`);
2. ``ltag scan --no-write``: the whole command (start-up, model load, walk, hashing, EXIF, decode,
   inference, catalog) on a fresh catalog;
3. ``ltag scan`` with keyword writing (JPEGs in place, NEFs through sidecars) on a fresh catalog, then
   ``ltag undo`` (checked: every file's sha256 is back to the original);
   1-3 are repeated (``--repeats``, default 3) in rounds of ceiling, ``--no-write``, ceiling, writing, ceiling:
   the machine's speed drifts by 10-20% within a minute, so each scan is compared with the mean of the ceiling
   runs just before and just after it, and the median over the rounds is reported;
4. a naive pipeline: full decode + resize, one image at a time (:func:`benchmarks.decode.naive_decode`);
5. a rescan of 100,000 unchanged files (a synthetic tree of small files with matching catalog rows): the
   whole ``ltag scan`` command, start-up included; files/s and its peak RSS (measured from a small launcher
   process: Linux would count this benchmark's own memory in a child it forked); plus, for reference, the
   walk limit (scandir + stat + an in-memory catalog lookup in one process).

Throughput is photos (recognised files) per second; a RAW+JPEG pair counts once, as the ceiling does.

Usage::

    python benchmarks/scan.py                         # 200 photos (40 RAW+JPEG pairs), 100k-file rescan
    python benchmarks/scan.py -n 60 --raw-pairs 10 --rescan-files 20000 --naive-limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = REPO_ROOT / "runs"


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds (utime + stime) of ``root`` and every descendant now (Linux /proc)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        parent[int(d)] = int(fields[1])
        cpu[int(d)] = (int(fields[11]) + int(fields[12])) / _TICK
    for pid, c in cpu.items():
        p, hops = pid, 0
        while p and p != root and hops < 64:
            p, hops = parent.get(p, 0), hops + 1
        if p == root:
            seen[pid] = max(seen.get(pid, 0.0), c)


def _ltag(*args: Any) -> tuple[float, float]:
    """Run ``ltag`` as a user does; returns (wall seconds, CPU seconds of the command and all its worker
    processes: the process tree is sampled from /proc every 50 ms, and the command's own total comes from wait4)."""
    import threading

    cmd = [sys.executable, "-m", "landmark_tagger", *map(str, args)]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        seen: dict[int, float] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                if os.path.isdir("/proc"):
                    _tree_cpu(proc.pid, seen)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"ltag {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{err.read().decode(errors='replace')[-3000:]}")
    # Both are lower bounds of the tree's CPU time: wait4 counts the command and the children it reaped, the
    # samples count every process of the tree up to its last 50 ms. The larger one is the better estimate.
    return wall, max(ru.ru_utime + ru.ru_stime, sum(seen.values()))


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


#: Runs ``ltag`` from a small launcher process and prints its wall time, peak RSS (KiB) and exit code. Linux counts
#: the memory of the process a command was forked from in the command's ru_maxrss (a fork copies the parent's
#: high-water mark, and exec keeps it), so a command started from this benchmark, big after the archive rounds,
#: would report this benchmark's memory instead of its own.
_LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execv(sys.executable, [sys.executable, "-m", "landmark_tagger", *sys.argv[1:]])
_, status, ru = os.wait4(pid, 0)
print(time.perf_counter() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _ltag_rss(*args: Any) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB of the ltag process, exit code), via os.wait4 in a small launcher process."""
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, *map(str, args)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def _warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


def _compile_package() -> None:
    """Byte-compile ltag's modules, as ``pip install`` does: a development checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as here) would otherwise compile them from source in every process of every run
    (~0.14 s CPU each for the main process and the decoders' fork server), which an installed ltag never does."""
    import compileall

    import landmark_tagger

    compileall.compile_dir(str(Path(landmark_tagger.__file__).parent), quiet=1)


def _sha_all(paths: list[Path]) -> dict[str, str]:
    from landmark_tagger.fsutil import sha256_file

    return {str(p): sha256_file(p) for p in paths}


# ------------------------------------------------------------------------------------------- archive scans
def archive_figures(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from archive import DEFAULT_DEST, all_files, make_archive, photo_paths
    from decode import decode_ceiling, naive_decode

    from landmark_tagger import preprocess
    from landmark_tagger.bundle import load_bundle

    dest = Path(args.dest) if args.dest else DEFAULT_DEST
    manifest = make_archive(dest, args.n, raw_pairs=args.raw_pairs)
    photos = [Path(p) for p in photo_paths(manifest, dest)]
    files = [Path(p) for p in all_files(manifest, dest)]
    nbytes = sum(p.stat().st_size for p in files)
    bundle = load_bundle(args.model, check_model=False)
    min_side = preprocess.min_decode_side(bundle.preprocess)
    workers = args.workers or os.cpu_count() or 1
    print(f"archive: {len(photos)} photos, {len(files)} files, {nbytes / 1e9:.2f} GB in {dest}; model "
          f"{bundle.model_id} (input {bundle.preprocess.size}, decode >= {min_side} px); {workers} worker(s) on "
          f"{os.cpu_count()} cores", flush=True)
    _warm(files)
    _compile_package()
    originals = _sha_all(files)
    model_args = ["--model", args.model] if args.model else []
    n = len(photos)
    rounds: list[dict[str, float]] = []
    written = tagged = 0
    undo_kb = 0.0
    # The machine's speed drifts (other tenants) by 10-20% within a minute: each round brackets each scan with a
    # ceiling run just before and just after it (ceiling, --no-write, ceiling, writing, ceiling), each scan is
    # compared with the mean of its two ceilings (seconds and CPU), and the medians over the rounds are reported.

    def ceiling_run() -> tuple[float, float]:
        """(seconds, CPU seconds) of one decode-only ceiling run."""
        c0 = _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF)
        res = decode_ceiling(photos, min_side=min_side, workers=workers)
        return res["seconds"], _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF) - c0

    for r in range(args.repeats):
        ceilings = [ceiling_run()]
        tmp = Path(tempfile.mkdtemp(prefix="ltag-bench-"))
        try:
            wall_nw, cpu_nw = _ltag("scan", dest, "--db", tmp / "nowrite.db", "--no-write", "--workers", workers,
                                    *model_args)
            assert _sha_all(files) == originals, "--no-write changed a file"
            ceilings.append(ceiling_run())
            wall_w, cpu_w = _ltag("scan", dest, "--db", tmp / "write.db", "--workers", workers, *model_args)
            ceilings.append(ceiling_run())
            con = sqlite3.connect(tmp / "write.db")
            written = con.execute("SELECT COUNT(*) FROM changes WHERE state = 'applied'").fetchone()[0]
            tagged = con.execute("SELECT COUNT(*) FROM photos WHERE status = 'tagged' AND role = 'primary'"
                                 ).fetchone()[0]
            undo_kb = (con.execute("SELECT SUM(LENGTH(undo)) FROM changes").fetchone()[0] or 0) / max(written, 1) / 1024
            con.close()
            wall_u, _ = _ltag("undo", "--db", tmp / "write.db")
            restored = _sha_all(files)
            leftovers = [p for p in dest.rglob("*.xmp")]
            assert restored == originals and not leftovers, "undo did not restore the archive byte for byte"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (s0, c0), (s1, c1), (s2, c2) = ceilings
        row = {"ceiling": n / statistics.mean([s0, s1, s2]), "cpu_ceiling": statistics.mean([c0, c1, c2]) / n * 1000,
               "ceiling_nw": n / ((s0 + s1) / 2), "ceiling_w": n / ((s1 + s2) / 2),
               "cpu_ceiling_nw": (c0 + c1) / 2 / n * 1000, "cpu_ceiling_w": (c1 + c2) / 2 / n * 1000,
               "no_write": n / wall_nw, "write": n / wall_w, "undo_s": wall_u,
               "cpu_no_write": cpu_nw / n * 1000, "cpu_write": cpu_w / n * 1000}
        rounds.append(row)
        print(f"round {r + 1}: ceiling {' / '.join(f'{n / s:.2f}' for s, _ in ceilings)} photos/s "
              f"({' / '.join(f'{c / n * 1000:.0f}' for _, c in ceilings)} ms CPU/photo) | "
              f"scan --no-write {row['no_write']:6.2f} ({row['cpu_no_write']:.0f} ms) = "
              f"{row['no_write'] / row['ceiling_nw']:.2f}x | writing {row['write']:6.2f} ({row['cpu_write']:.0f} ms) = "
              f"{row['write'] / row['ceiling_w']:.2f}x | undo {wall_u:.1f} s, every file's sha256 back to the original",
              flush=True)

    def med(f: Any) -> float:
        return statistics.median(f(x) for x in rounds)

    print(f"written per writing scan: {written} files/sidecars, {tagged}/{n} photos tagged; undo store "
          f"{undo_kb:.1f} KB per file", flush=True)
    naive_paths = photos[: args.naive_limit] if args.naive_limit else photos
    s0 = _cpu(resource.RUSAGE_SELF)
    naive = naive_decode(naive_paths, size=bundle.preprocess.size)
    cpu_naive = _cpu(resource.RUSAGE_SELF) - s0
    print(f"naive pipeline      : {naive['files_per_s']:7.2f} photos/s ({len(naive_paths)} photos, one at a time; "
          f"{cpu_naive / len(naive_paths) * 1000:.0f} ms CPU/photo)", flush=True)
    nw = med(lambda x: x["no_write"])
    out.update(photos=n, files=len(files), gigabytes=round(nbytes / 1e9, 2), workers=workers,
               cores=os.cpu_count(), model_id=bundle.model_id, rounds=len(rounds),
               ceiling_photos_per_s=round(med(lambda x: x["ceiling"]), 2),
               scan_no_write_photos_per_s=round(nw, 2), scan_write_photos_per_s=round(med(lambda x: x["write"]), 2),
               naive_photos_per_s=round(naive["files_per_s"], 2),
               no_write_vs_ceiling=round(med(lambda x: x["no_write"] / x["ceiling_nw"]), 3),
               no_write_vs_naive=round(nw / naive["files_per_s"], 2),
               write_vs_ceiling=round(med(lambda x: x["write"] / x["ceiling_w"]), 3),
               cpu_ms_per_photo={"ceiling": round(med(lambda x: x["cpu_ceiling"])),
                                 "no_write": round(med(lambda x: x["cpu_no_write"])),
                                 "write": round(med(lambda x: x["cpu_write"])),
                                 "naive": round(cpu_naive / len(naive_paths) * 1000)},
               cpu_ratio={"no_write": round(med(lambda x: x["cpu_ceiling_nw"] / x["cpu_no_write"]), 3),
                          "write": round(med(lambda x: x["cpu_ceiling_w"] / x["cpu_write"]), 3)},
               per_round=[{k: round(v, 2) for k, v in x.items()} for x in rounds],
               undo_kb_per_file=round(undo_kb, 2), load_avg_1m=round(os.getloadavg()[0], 2))
    print(f"medians over {len(rounds)} round(s): ceiling {out['ceiling_photos_per_s']:.2f} photos/s, "
          f"scan --no-write {nw:.2f}, writing {out['scan_write_photos_per_s']:.2f}", flush=True)
    print(f"ratios: no-write / ceiling = {out['no_write_vs_ceiling']:.2f} (target >= 0.8), "
          f"no-write / naive = {out['no_write_vs_naive']:.1f}x (target >= 5), "
          f"writing / ceiling = {out['write_vs_ceiling']:.2f} (target >= 0.6)", flush=True)
    c = out["cpu_ms_per_photo"]
    print(f"by CPU time (independent of other load on the machine): no-write / ceiling = "
          f"{out['cpu_ratio']['no_write']:.2f}, writing / ceiling = {out['cpu_ratio']['write']:.2f}, "
          f"naive / no-write = {c['naive'] / c['no_write']:.1f}x per core ({workers} cores in parallel for the scan); "
          f"load average while measuring: {out['load_avg_1m']}", flush=True)


# ------------------------------------------------------------------------------------------------- rescan
def _make_tree(root: Path, n: int) -> list[tuple[str, int, int, str]]:
    """n small files in folders of 1,000 (every 5th photo a RAW+JPEG pair); returns (path, size, mtime, kind)."""
    stamp = root / ".tree-done"
    if not (stamp.exists() and stamp.read_text() == str(n)):
        if root.exists():
            shutil.rmtree(root)
        made = 0
        folder = 0
        while made < n:
            d = root / f"{2000 + folder // 12}" / f"{2000 + folder // 12}-{folder % 12 + 1:02d}"
            d.mkdir(parents=True, exist_ok=True)
            i = 0
            while i < 1000 and made < n:
                stem = f"DSC_{folder * 1000 + i:06d}"
                (d / f"{stem}.JPG").write_bytes(b"\xff\xd8" + bytes(62))
                made += 1
                i += 1
                if i % 5 == 0 and made < n and i < 1000:
                    (d / f"{stem}.NEF").write_bytes(b"II*\x00" + bytes(60))
                    made += 1
                    i += 1
            folder += 1
        stamp.write_text(str(n))
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.startswith("."):
                continue
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns, "raw" if name.endswith(".NEF") else "jpeg"))
    return out


def _make_catalog(db: Path, files: list[tuple[str, int, int, str]], model_id: str) -> None:
    from landmark_tagger.catalog import open_catalog

    if db.exists():
        db.unlink()
    cat = open_catalog(db)
    try:
        from landmark_tagger.search import drop_search_triggers, rebuild_search_index
    except ImportError:
        drop_search_triggers = rebuild_search_index = None
    if drop_search_triggers:
        drop_search_triggers(cat.conn)
    rows = []
    for path, size, mtime, kind in files:
        folder, name = os.path.split(path)
        stem, ext = os.path.splitext(name)
        rows.append((path, folder, name, stem, ext[1:], f"{folder}/{stem.casefold()}",
                     "companion" if kind == "raw" else "primary", kind, size, mtime, model_id, "tagged",
                     "Taj Mahal", 0.93, '["Taj Mahal", "Landmarks|Taj Mahal"]', "written"))
    with cat.transaction() as conn:
        conn.executemany("INSERT INTO photos(path, folder, name, stem, ext, group_key, role, kind, size, mtime_ns, "
                         "model_id, status, landmark, confidence, ltag_keywords, write_status) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if rebuild_search_index:
        rebuild_search_index(cat.conn)
    cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()


def _walk_limit(root: Path, index: dict[str, tuple[int, int]]) -> float:
    t0 = time.perf_counter()
    stack = [str(root)]
    hit = 0
    while stack:
        with os.scandir(stack.pop()) as it:
            for de in it:
                if de.is_dir():
                    stack.append(de.path)
                    continue
                st = de.stat()
                r = index.get(de.path)
                if r is not None and r[0] == st.st_size and r[1] == st.st_mtime_ns:
                    hit += 1
    return time.perf_counter() - t0


def rescan_figures(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from landmark_tagger.bundle import load_bundle

    n = args.rescan_files
    base = RUNS / "bench-rescan"
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = _make_tree(base / "tree", n)
    model_id = load_bundle(args.model, check_model=False).model_id
    db = base / "catalog.db"
    _make_catalog(db, files, model_id)
    print(f"rescan tree: {len(files):,} files, catalog with {len(files):,} rows (set up in "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    index = {p: (s, m) for p, s, m, _ in files}
    walk_s = min(_walk_limit(base / "tree", index) for _ in range(3))
    del index
    model_args = ["--model", args.model] if args.model else []
    runs = []
    for _ in range(args.rescan_repeats):
        wall, rss, rc = _ltag_rss("scan", base / "tree", "--db", db, *model_args)
        if rc != 0:
            raise SystemExit(f"ltag scan (rescan) exited with {rc}")
        runs.append((wall, rss))
    con = sqlite3.connect(db)
    last = json.loads(con.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    con.close()
    assert last["unchanged"] == len(files) and last["tagged"] == 0, last
    best = min(w for w, _ in runs)
    rss = max(r for _, r in runs)
    print(f"walk limit (scandir + stat + dict lookup, in process): {walk_s:.2f} s = {len(files) / walk_s:,.0f} files/s",
          flush=True)
    print(f"ltag scan, {len(files):,} unchanged files (whole command, start-up included): best {best:.2f} s = "
          f"{len(files) / best:,.0f} files/s; runs {', '.join(f'{w:.2f}' for w, _ in runs)} s; peak RSS "
          f"{rss / 1024:.0f} MiB (targets: >= 50,000 files/s, 100k in < 2 s, RSS < 1 GiB)", flush=True)
    out.update(rescan_files=len(files), rescan_best_s=round(best, 3), rescan_files_per_s=round(len(files) / best),
               rescan_runs_s=[round(w, 3) for w, _ in runs], rescan_peak_rss_mib=round(rss / 1024),
               walk_limit_s=round(walk_s, 3), walk_limit_files_per_s=round(len(files) / walk_s))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="photos in the archive (default 200)")
    ap.add_argument("--raw-pairs", type=int, default=40, help="photos that also have a NEF (default 40)")
    ap.add_argument("--dest", help="archive folder (default runs/bench-archive)")
    ap.add_argument("--model", help="model bundle folder (default: the shipped one)")
    ap.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of ceiling + scans + undo, back to back; medians reported (default 3)")
    ap.add_argument("--naive-limit", type=int, default=40, help="photos for the naive pipeline (0 = all)")
    ap.add_argument("--rescan-files", type=int, default=100_000, help="files in the rescan tree (default 100,000)")
    ap.add_argument("--rescan-repeats", type=int, default=3)
    ap.add_argument("--skip-archive", action="store_true", help="only the rescan figures")
    ap.add_argument("--skip-rescan", action="store_true", help="only the archive figures")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    if not args.skip_archive:
        archive_figures(args, out)
    if not args.skip_rescan:
        rescan_figures(args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
