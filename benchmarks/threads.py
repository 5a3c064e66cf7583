"""What numpy's and faiss's idle worker threads cost, and what ltag's one-thread setting saves (docs/scan.md).

The ``ltag`` console script sets ``OPENBLAS_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1`` unless they are set. This
prints, in alternating pairs (this machine's speed drifts within a minute, so medians of pairs):

1. ``python -c "import numpy"``: CPU seconds of the process (rusage of the child), with OpenBLAS's threads (one per
   core, as numpy starts them when nothing is set) and with one thread;
2. ``ltag scan --no-write`` of a few photos of the benchmark archive (``benchmarks/archive.py``) on a fresh catalog:
   wall seconds and CPU seconds of the whole process tree (the command, its fork server and decoders), with both
   variables at the core count (what the libraries do when nothing is set) and with ltag's default.

Usage::

    python benchmarks/threads.py                # 10 pairs each, 6 photos
    python benchmarks/threads.py --pairs 20 --photos 12
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    if threads is not None:
        env.update({k: str(threads) for k in VARS})
    return env


def _import_cpu(threads: int) -> float:
    """CPU seconds (user + sys) of a child process that imports numpy and lingers 0.3 s, as a command would."""
    code = ("import os, resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-c', 'import numpy, time; time.sleep(0.3)'])\n"
            "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(r.ru_utime + r.ru_stime)\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(threads), capture_output=True, text=True, check=True)
    return float(out.stdout)


def _scan(folder: Path, db: Path, threads: int | None) -> tuple[float, float]:
    import scan as bench_scan

    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(_env(threads))
        return bench_scan._ltag("scan", "--no-write", "--db", db, folder)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _pairs(n: int, a, b) -> tuple[list, list]:
    ra, rb = [], []
    for i in range(n):  # alternate the order, so that neither side always runs first
        for side in ((ra, a), (rb, b)) if i % 2 == 0 else ((rb, b), (ra, a)):
            side[0].append(side[1]())
    return ra, rb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--photos", type=int, default=6, help="photos of the benchmark archive to scan (default 6)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    many, one = _pairs(args.pairs, lambda: _import_cpu(cores), lambda: _import_cpu(1))
    print(f"import numpy, CPU s (median of {args.pairs} pairs): {cores} OpenBLAS threads {statistics.median(many):.3f}"
          f" | 1 thread {statistics.median(one):.3f} | saved {statistics.median(a - b for a, b in zip(many, one, strict=True)):.3f}")

    from archive import make_archive, photo_paths

    manifest = make_archive()
    photos = [Path(p) for p in photo_paths(manifest)][:args.photos]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for p in photos:
            shutil.copy(p, folder / p.name)
        db = Path(tmp) / "c.db"
        _scan(folder, db, None)  # warm the page cache and the geocoder cache
        old, new = _pairs(args.pairs, lambda: _scan(folder, db, cores), lambda: _scan(folder, db, None))
    wall_old, wall_new = statistics.median(w for w, _ in old), statistics.median(w for w, _ in new)
    cpu_old, cpu_new = statistics.median(c for _, c in old), statistics.median(c for _, c in new)
    print(f"ltag scan --no-write of {len(photos)} photos (median of {args.pairs} pairs):"
          f" variables at {cores} {wall_old:.2f} s wall, {cpu_old:.2f} s CPU"
          f" | ltag's default (1) {wall_new:.2f} s wall, {cpu_new:.2f} s CPU"
          f" | wall ratio {statistics.median(b[0] / a[0] for a, b in zip(old, new, strict=True)):.3f},"
          f" CPU saved {statistics.median(a[1] - b[1] for a, b in zip(old, new, strict=True)):.2f} s")


if __name__ == "__main__":
    main()
